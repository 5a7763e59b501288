// The runtime every script in this directory shares with the Go harness
// (playwright.go): how a run gets its parameters, reports its steps, saves
// screenshots and waits for the Go side at a barrier.
//
// Protocol, one JSON object per line:
//   stdin, first line:  {"chromium": PATH, "args": [...], "sandbox": BOOL,
//                        "screenshots": DIR, "params": {...the script's own...}}
//   stdout, any time:   {"barrier": NAME}  the script waits until the Go side
//   stdin, in answer:   {"continue": true} or {"abort": "why"}
//   stdout, last line:  {"result": {"ok": BOOL, "steps": [...], "error": "...", "data": {...}}}
// Progress and the browser's console go to stderr, a line each.
// The process exits 0 only when every step passed.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();

async function readMessage() {
  const { value, done } = await lines.next();
  if (done) throw new Error('the Go harness closed stdin');
  return JSON.parse(value);
}

function emit(obj) {
  // stdout is a pipe: writes to pipes are synchronous on Linux, so nothing
  // is lost when the process exits right after.
  process.stdout.write(JSON.stringify(obj) + '\n');
}

export function log(...args) {
  process.stderr.write(args.join(' ') + '\n');
}

// A failure whose message is for the person reading the test's output.
export class StepError extends Error {}

export function fail(message) {
  throw new StepError(message);
}

export function check(cond, message) {
  if (!cond) fail(message);
}

// run is the whole script: it reads the setup, launches the browser and
// calls main(t), where t holds browser, context, page, params, data (what
// to report to the Go side), pageErrors (the page's errors so far) and the
// step and barrier helpers. It never
// returns: it closes the browser, prints the result and exits.
export async function run(main) {
  const steps = [];
  const data = {};
  let browser;
  let ok = false;
  let error = '';
  try {
    const setup = await readMessage();
    mkdirSync(setup.screenshots, { recursive: true });
    browser = await chromium.launch({
      executablePath: setup.chromium,
      args: setup.args,
      chromiumSandbox: setup.sandbox === true,
      timeout: 60_000,
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    // pageErrors are the page's script errors and console errors, except
    // the browser's notes on answers with an error status (a refused
    // request is often what a step tests): a script should end with none.
    const pageErrors = [];
    page.on('console', (m) => {
      log(`console ${m.type()}: ${m.text()}`);
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(m.text());
    });
    // Why a request failed (a navigation that ends on chrome-error:// says
    // nothing by itself), and every page's status, for the log.
    page.on('requestfailed', (r) => log(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
    page.on('response', (r) => {
      if (r.request().isNavigationRequest()) log(`navigation: ${r.request().method()} ${r.url()}: ${r.status()}`);
    });
    page.on('pageerror', (e) => {
      log(`page error: ${e.message}`);
      pageErrors.push(e.message);
    });
    let n = 0;
    const t = {
      browser, context, page, params: setup.params ?? {}, data, pageErrors,
      // step runs fn, then saves a full-page screenshot named after it; a
      // failed step is saved too (-failed) and ends the run.
      async step(name, fn) {
        n++;
        const file = path.join(setup.screenshots, `${String(n).padStart(2, '0')}-${slug(name)}.png`);
        const started = Date.now();
        log(`step ${n}: ${name}`);
        try {
          const out = await fn();
          await page.screenshot({ path: file, fullPage: true });
          steps.push({ name, ok: true, screenshot: file, ms: Date.now() - started });
          return out;
        } catch (e) {
          const failed = file.replace(/\.png$/, '-failed.png');
          let shot = '';
          try {
            await page.screenshot({ path: failed, fullPage: true, timeout: 10_000 });
            shot = failed;
          } catch (e2) {
            log(`screenshot of the failed step: ${e2.message}`);
          }
          steps.push({ name, ok: false, screenshot: shot, ms: Date.now() - started, error: describe(e) });
          throw new StepError(`step "${name}" failed at ${page.url()}: ${describe(e)}`);
        }
      },
      // barrier tells the Go side the script reached name and waits until
      // it has done its part (e.g. stopped an agent).
      async barrier(name) {
        log(`barrier ${name}: waiting for the Go side`);
        emit({ barrier: name });
        const answer = await readMessage();
        if (answer.abort) fail(`the Go side aborted at barrier ${name}: ${answer.abort}`);
        check(answer.continue === true, `unexpected answer at barrier ${name}: ${JSON.stringify(answer)}`);
      },
    };
    await main(t);
    ok = true;
  } catch (e) {
    error = e instanceof StepError ? e.message : (e && e.stack) || String(e);
    log(`FAILED: ${error}`);
  }
  if (browser) {
    await browser.close().catch((e) => log(`close the browser: ${e.message}`));
  }
  emit({ result: { ok, steps, error, data } });
  process.exit(ok ? 0 : 1);
}

function describe(e) {
  if (e instanceof StepError) return e.message;
  // Playwright's messages carry a call log after the first lines; the
  // first line says what timed out or what was missing.
  const msg = (e && e.message) || String(e);
  return msg.split('\n').slice(0, 6).join('\n');
}

function slug(s) {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}

// signInAtIssuer fills the embedded issuer's sign-in form (internal/issuer
// pages.go: fields login and password, button action=approve) on the page
// it is showing and submits it.
export async function signInAtIssuer(page, login, password) {
  const form = page.locator('form:has(input[name="password"])');
  await form.waitFor({ state: 'visible', timeout: 20_000 });
  await form.locator('input[name="login"]').fill(login);
  await form.locator('input[name="password"]').fill(password);
  await form.locator('button[name="action"][value="approve"]').click();
}
