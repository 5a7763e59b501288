// The hub's web console (internal/console) in a real browser, the way a
// person uses it: sign in through the issuer, see the cluster Connected,
// look at its page, create a role assignment with the form, see a forged
// cross-site change refused, read the audit page, get the commands to
// connect a cluster, watch the cluster turn Offline when its agent stops
// (barrier "stop-agent": the Go side stops it) without reloading, and
// sign out.
//
// Parameters (all strings unless said):
//   consoleURL      https://HUB/console/ (with the trailing slash)
//   login, password, displayName   the person who signs in
//   cluster         GROUP/NAME of a connected cluster the person may see
//   assignee, assigneeName         the principal to assign a role to (object ID, display name)
//   role            the role's name as the form offers it, e.g. Reader
//   scope           the assignment's scope, e.g. /groups/G/clusters/N
//   forgedAssignee  object ID the forged cross-site request tries to assign
//   connectGroup, connectName      what to register on the connect page
//   offlineTimeoutMs (number)      how long the row may take to show Offline
//   sessionCookie   the session cookie's name (default __Host-tether-console)
//   issuerName      the issuer to pick on the sign-in page, by its link's
//                   text (default: the first, a#sign-in)
// Data reported: assignmentID, joinToken (from the connect page), csp,
// forgedStatus and forgedCookieSent (whether the browser sent the session
// cookie with the forged post).
import { run, check, fail, signInAtIssuer } from './harness.mjs';

const STEP_TIMEOUT = 20_000;

await run(async ({ page, context, params: p, step, barrier, data, pageErrors }) => {
  const base = new URL(p.consoleURL);
  const consoleURL = (path) => new URL(path, base).toString();
  const [group, name] = p.cluster.split('/');
  const row = page.locator(`table#clusters tr[data-cluster="${p.cluster}"]`);

  // Every HTML page the console serves must carry a strict CSP.
  const policies = new Map();
  let lastReferrerPolicy = '';
  page.on('response', (resp) => {
    const req = resp.request();
    if (req.resourceType() === 'document' && resp.url().startsWith(base.toString()) && resp.status() < 300) {
      policies.set(resp.url(), resp.headers()['content-security-policy'] || '');
      lastReferrerPolicy = resp.headers()['referrer-policy'] || '';
    }
  });
  const checkPolicies = () => {
    check(policies.size > 0, 'no console page was seen to check its Content-Security-Policy');
    for (const [url, csp] of policies) {
      check(csp !== '', `${url} has no Content-Security-Policy header`);
      check(!csp.includes("'unsafe-inline'"), `${url}: the Content-Security-Policy allows 'unsafe-inline': ${csp}`);
      check(!csp.includes("'unsafe-eval'"), `${url}: the Content-Security-Policy allows 'unsafe-eval': ${csp}`);
      check(/(^|;)\s*(default-src|script-src)\s/.test(csp), `${url}: the Content-Security-Policy restricts no scripts: ${csp}`);
      data.csp = csp;
    }
  };
  const noInlineScript = async () => {
    const inline = await page.locator('script:not([src])').count();
    check(inline === 0, `${page.url()} has ${inline} inline <script> elements`);
  };
  // Navigations of the top frame, to prove a change showed without one.
  let navigations = 0;
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations++; });

  await step('the console asks to sign in', async () => {
    await page.goto(p.consoleURL);
    // The sign-in page offers each issuer the hub trusts: a#sign-in is the
    // first, a#sign-in-N the others; issuerName picks one by its text.
    const signIn = p.issuerName
      ? page.locator('a[id^="sign-in"]', { hasText: p.issuerName })
      : page.locator('a#sign-in');
    const form = page.locator('form input[name="password"]');
    await page.locator('a[id^="sign-in"]').or(form).first().waitFor({ timeout: STEP_TIMEOUT });
    if (!(await form.isVisible())) {
      const offered = await page.locator('a[id^="sign-in"]').allInnerTexts();
      check(await signIn.count() === 1, `no sign-in link ${p.issuerName ? 'for ' + p.issuerName : 'a#sign-in'}; the page offers ${JSON.stringify(offered)}`);
      await signIn.click();
    }
    await form.waitFor({ timeout: STEP_TIMEOUT });
  });

  await step('sign in at the issuer', async () => {
    await signInAtIssuer(page, p.login, p.password);
    await page.locator('#whoami').waitFor({ timeout: STEP_TIMEOUT });
    check(page.url().startsWith(base.toString()), `after sign-in the browser is at ${page.url()}, not in the console`);
    const who = (await page.locator('#whoami').innerText()).trim();
    check(who.includes(p.displayName), `#whoami says ${JSON.stringify(who)}; want ${p.displayName}`);
    for (const id of ['a#nav-clusters', 'a#nav-assignments', 'a#nav-audit', 'a#nav-connect', 'button#sign-out']) {
      check(await page.locator(id).count() === 1, `the signed-in page has no ${id}`);
    }
  });

  await step('the session cookie and the page policy', async () => {
    const cookieName = p.sessionCookie || '__Host-tether-console';
    const cookies = await context.cookies(p.consoleURL);
    const c = cookies.find((c) => c.name === cookieName);
    check(c, `no session cookie ${cookieName}; the browser holds ${JSON.stringify(cookies.map((c) => c.name))}`);
    check(c.httpOnly, `the session cookie is not HttpOnly: ${JSON.stringify({ ...c, value: undefined })}`);
    check(c.secure, `the session cookie is not Secure: ${JSON.stringify({ ...c, value: undefined })}`);
    check(c.sameSite === 'Lax', `the session cookie is SameSite=${c.sameSite}, want Lax`);
    for (const other of cookies) {
      check(other.secure, `cookie ${other.name} is not Secure`);
    }
    checkPolicies();
    await noInlineScript();
  });

  await step('clusters: the cluster is Connected', async () => {
    await page.locator('a#nav-clusters').click();
    await row.waitFor({ timeout: STEP_TIMEOUT });
    await waitStatus(row, 'Connected', STEP_TIMEOUT);
    const cell = async (cls) => (await row.locator(`.${cls}`).innerText()).trim();
    check(await cell('name') === name, `the name cell says ${JSON.stringify(await cell('name'))}; want ${name}`);
    check(await cell('group') === group, `the group cell says ${JSON.stringify(await cell('group'))}; want ${group}`);
    check(await row.locator('.status.status-connected').count() === 1, `the status cell lacks class status-connected: ${await row.locator('.status').getAttribute('class')}`);
    for (const cls of ['last-seen', 'agent-version', 'kubernetes-version']) {
      check(await cell(cls) !== '', `the ${cls} cell of a connected cluster is empty`);
    }
    check(/^v\d+\.\d+/.test(await cell('kubernetes-version')), `the kubernetes-version cell says ${JSON.stringify(await cell('kubernetes-version'))}`);
    check(/^[1-9]\d*$/.test(await cell('nodes')), `the nodes cell says ${JSON.stringify(await cell('nodes'))}; want a node count`);
    checkPolicies();
  });

  await step("the cluster's page", async () => {
    const resp = await page.goto(consoleURL(`clusters/${encodeURIComponent(group)}/${encodeURIComponent(name)}`));
    check(resp && resp.ok(), `the cluster's page answered ${resp && resp.status()}`);
    await present(page, 'table#cluster-assignments');
    await present(page, 'table#cluster-audit');
    const text = await page.locator('body').innerText();
    check(text.includes(name), `the cluster's page does not name the cluster ${name}`);
    checkPolicies();
  });

  await step('create a role assignment with the form', async () => {
    await page.locator('a#nav-assignments').click();
    const form = page.locator('form#new-assignment');
    await form.waitFor({ timeout: STEP_TIMEOUT });
    await form.locator('input[name="assignee"]').fill(p.assignee);
    await form.locator('select[name="role"]').selectOption(p.role);
    await form.locator('input[name="scope"]').fill(p.scope);
    await form.locator('button#create-assignment').click();
    await page.locator('#flash, #error').first().waitFor({ timeout: STEP_TIMEOUT });
    if (await page.locator('#error').isVisible()) {
      const shown = (await page.locator('#error').innerText()).trim();
      // A browser sends "Origin: null" with a form post from a page whose
      // Referrer-Policy is no-referrer (the Fetch standard says so), so an
      // Origin check then refuses the console's own forms.
      const hint = shown.includes('"null"')
        ? ` (the browser sent Origin: null; the page's Referrer-Policy is ${JSON.stringify(lastReferrerPolicy)}: with no-referrer, browsers send Origin: null on form posts)`
        : '';
      fail(`creating the assignment showed an error: ${shown}${hint}`);
    }
    // The principal cell may show the display name or the object ID.
    const principal = new RegExp(`${escapeRegExp(p.assignee)}|${escapeRegExp(p.assigneeName)}`);
    const created = page.locator('table#assignments tr[data-assignment-id]')
      .filter({ has: page.locator('.principal', { hasText: principal }) })
      .filter({ has: page.locator('.role', { hasText: p.role }) })
      .filter({ has: page.locator('.scope', { hasText: p.scope }) });
    try {
      await created.first().waitFor({ timeout: STEP_TIMEOUT });
    } catch (e) {
      const rows = await page.locator('table#assignments tr[data-assignment-id]').allInnerTexts();
      fail(`no row for ${p.assigneeName} as ${p.role} at ${p.scope} after "${(await page.locator('#flash').innerText()).trim()}"; the table shows:\n${rows.join('\n')}`);
    }
    check(await created.count() === 1, `${await created.count()} rows for the new assignment`);
    data.assignmentID = await created.getAttribute('data-assignment-id');
    check(data.assignmentID, 'the new row has an empty data-assignment-id');
    check(await created.locator('form.delete-assignment').count() === 1, 'the new row has no form.delete-assignment');
    checkPolicies();
    await noInlineScript();
  });

  await step('a forged cross-site change is refused', async () => {
    // A page on another origin of the same site (the hub's host, another
    // port: the browser sends the SameSite=Lax cookie along) posts the
    // assignment form without the console's own form fields. The page is
    // served by the test through Playwright's routing, not by a server.
    const form = page.locator('form#new-assignment');
    const action = new URL((await form.getAttribute('action')) || page.url(), page.url()).toString();
    const attacker = `${base.protocol}//${base.hostname}:${base.port === '65000' ? '65001' : '65000'}/attack`;
    const attack = await context.newPage();
    try {
      await attack.route(attacker, (route) => route.fulfill({
        contentType: 'text/html',
        body: `<!doctype html><form method="post" action="${action}">
          <input name="assignee" value="${p.forgedAssignee}"><input name="role" value="${p.role}">
          <input name="scope" value="${p.scope}"><button id="go">go</button></form>`,
      }));
      await attack.goto(attacker);
      const [resp] = await Promise.all([
        attack.waitForResponse((r) => r.url() === action && r.request().method() === 'POST', { timeout: STEP_TIMEOUT }),
        attack.locator('#go').click(),
      ]);
      data.forgedStatus = resp.status();
      const sent = await resp.request().allHeaders();
      data.forgedCookieSent = /tether-console/.test(sent.cookie || '');
      check(resp.status() === 403, `a cross-origin POST to ${action} from ${attacker} answered ${resp.status()}; want 403`);
    } finally {
      await attack.close();
    }
    await page.reload();
    await page.locator('table#assignments').waitFor({ timeout: STEP_TIMEOUT });
    const forged = await page.locator('table#assignments tr[data-assignment-id]', { hasText: p.forgedAssignee }).count();
    check(forged === 0, `the forged request created ${forged} assignments for ${p.forgedAssignee}`);
  });

  await step('the audit page', async () => {
    await page.locator('a#nav-audit').click();
    await present(page, 'form#audit-search');
    await present(page, 'svg#audit-chart');
    await present(page, 'table#audit tr.audit-event');
    // The test sent 3 requests for the cluster through the gateway first.
    const series = page.locator(`svg#audit-chart g.series.requests[data-cluster="${p.cluster}"] title`);
    check(await series.count() === 1, `the audit chart has no requests series for ${p.cluster}`);
    const title = await series.textContent();
    const n = Number(title.slice(title.lastIndexOf(':') + 1));
    check(n >= 3, `the audit chart counts ${n} requests to ${p.cluster} ("${title}"), want at least the test's 3`);
    checkPolicies();
    await noInlineScript();
  });

  await step('connect a cluster: the commands with a join token', async () => {
    await page.locator('a#nav-connect').click();
    const form = page.locator('form:has([name="name"])');
    await form.waitFor({ timeout: STEP_TIMEOUT });
    for (const field of ['group', 'name', 'location', 'mode']) {
      check(await form.locator(`[name="${field}"]`).count() === 1, `the connect form has no ${field} field`);
    }
    await setField(form.locator('[name="group"]'), p.connectGroup);
    await setField(form.locator('[name="name"]'), p.connectName);
    await form.locator('button[type="submit"], button:not([type]), input[type="submit"]').first().click();
    const pre = page.locator('pre#connect-commands');
    try {
      await pre.waitFor({ timeout: STEP_TIMEOUT });
    } catch (e) {
      const err = page.locator('#error');
      fail(`no pre#connect-commands after submitting the connect form${await err.count() ? ': ' + (await err.innerText()).trim() : ''}`);
    }
    const commands = await pre.innerText();
    check(commands.includes(p.connectName), `the commands do not name the cluster ${p.connectName}:\n${commands}`);
    const token = /--join-token[= ](\S{16,})/.exec(commands);
    check(token, `the commands carry no --join-token:\n${commands}`);
    data.joinToken = token[1];
    checkPolicies();
  });

  await step('clusters: Connected before the agent stops', async () => {
    await page.locator('a#nav-clusters').click();
    await row.waitFor({ timeout: STEP_TIMEOUT });
    await waitStatus(row, 'Connected', STEP_TIMEOUT);
  });

  await barrier('stop-agent');

  await step('clusters: Offline shows without a reload', async () => {
    const before = navigations;
    await waitStatus(row, 'Offline', p.offlineTimeoutMs || 60_000, async () => {
      // Say whether a reload would have shown it: the table's refresh is
      // what failed then, not the hub.
      await page.reload();
      await row.waitFor({ timeout: STEP_TIMEOUT });
      return `; after a reload it says ${JSON.stringify((await row.locator('.status').innerText()).trim())}`;
    });
    check(navigations === before, `the page navigated ${navigations - before} times while waiting; the table must refresh by itself`);
    check(await row.locator('.status.status-offline').count() === 1, `the status cell lacks class status-offline: ${await row.locator('.status').getAttribute('class')}`);
  });

  // Signed out from the role assignments page. From the clusters page, with
  // its table's refresh running, the sign-out ended on a browser error page
  // (chrome-error://) in 2 of about 10 full CI-like runs and never alone;
  // the harness now logs why a request failed, for when it is seen again.
  await step('sign out', async () => {
    await page.locator('a#nav-assignments').click();
    await page.locator('table#assignments').waitFor({ timeout: STEP_TIMEOUT });
    await page.locator('button#sign-out').click();
    await page.locator('a#sign-in, form input[name="password"]').first().waitFor({ timeout: STEP_TIMEOUT });
    const cookies = await context.cookies(p.consoleURL);
    const left = cookies.find((c) => c.name === (p.sessionCookie || '__Host-tether-console'));
    check(!left, 'the session cookie is still there after signing out');
    await page.goto(consoleURL('clusters'));
    await page.locator('a#sign-in, form input[name="password"]').first().waitFor({ timeout: STEP_TIMEOUT });
    check(await page.locator('table#clusters').count() === 0, 'the clusters table shows after signing out');
  });

  await step('no script or console errors on any page', async () => {
    check(pageErrors.length === 0, `the pages logged errors: ${pageErrors.join(' | ')}`);
  });
});

// waitStatus waits until the row's status cell says exactly want. On
// timeout the message says what it said instead, plus what explain() adds.
async function waitStatus(row, want, timeout, explain) {
  const status = row.locator('.status');
  try {
    await row.locator('.status', { hasText: new RegExp(`^\\s*${want}\\s*$`) }).waitFor({ timeout });
  } catch (e) {
    const got = (await status.innerText({ timeout: 5_000 }).catch(() => '(no status cell)')).trim();
    const more = explain ? await explain().catch((e2) => `; reloading failed: ${e2.message.split('\n')[0]}`) : '';
    fail(`the status cell says ${JSON.stringify(got)} after ${timeout / 1000} s; want ${want}${more}`);
  }
}

// present waits until the page holds an element matching sel; if it does
// not, the message carries what the page says instead (its notes and
// errors), such as a part the signed-in person may not see.
async function present(page, sel) {
  try {
    await page.locator(sel).first().waitFor({ state: 'attached', timeout: STEP_TIMEOUT });
  } catch (e) {
    const notes = await page.locator('#error, .error, .note').allInnerTexts().catch(() => []);
    fail(`${page.url()} has no ${sel}${notes.length ? '; it says: ' + notes.map((n) => n.trim()).join(' / ') : ''}`);
  }
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// setField types into an input or picks an option of a select.
async function setField(field, value) {
  if (await field.evaluate((el) => el.tagName) === 'SELECT') {
    await field.selectOption(value);
  } else {
    await field.fill(value);
  }
}
