// The hub's web console signing a person in through an external OpenID
// provider (test/oidcprovider, server.js), in a real browser: the sign-in
// page offers the provider besides the hub's own directory; the person
// picks it, signs in and consents on the provider's pages, comes back to
// the console's clusters under their name, with a session cookie that is
// HttpOnly, Secure and SameSite=Lax, and sees the clusters their role lets
// them see and no other; then signs out.
//
// Parameters (all strings unless said):
//   consoleURL      https://HUB/console/ (with the trailing slash)
//   issuer          the provider's issuer URL: the sign-in link to pick is
//                   the one whose data-issuer says so
//   login, password, displayName   the person at the provider
//   visible (list)  GROUP/NAME of the clusters the person may see
//   hidden (list)   GROUP/NAME of clusters they must not see
//   sessionCookie   the session cookie's name (default __Host-tether-console)
// Data reported: clusters (the GROUP/NAME of every row of the clusters
// table), whoami (what #whoami said).
import { run, check, fail } from './harness.mjs';

const STEP_TIMEOUT = 20_000;

await run(async ({ page, context, params: p, step, data }) => {
  const base = new URL(p.consoleURL);
  const issuer = new URL(p.issuer);
  const cookieName = p.sessionCookie || '__Host-tether-console';
  // The provider's pages (test/oidcprovider/server.js): form#login, then
  // form#consent, each on /interaction/{uid}.
  const login = page.locator('form#login');
  const consent = page.locator('form#consent');

  await step('the sign-in page offers the external provider', async () => {
    await page.goto(p.consoleURL);
    await page.locator('a#sign-in').waitFor({ timeout: STEP_TIMEOUT });
    const links = page.locator('a[id^="sign-in"][data-issuer]');
    const offered = await links.evaluateAll((as) => as.map((a) => a.dataset.issuer));
    check(offered.includes(p.issuer), `the sign-in page offers ${JSON.stringify(offered)}; want ${p.issuer} among them`);
    check(offered.length >= 2, `the sign-in page offers only ${JSON.stringify(offered)}; want the hub's own directory too`);
    // The sign-in cookie does not exist before the person picks an issuer.
    const early = (await context.cookies(p.consoleURL)).map((c) => c.name);
    check(!early.includes(cookieName), `a session cookie before signing in: ${JSON.stringify(early)}`);
  });

  await step("pick the provider: its login page", async () => {
    const link = page.locator(`a[id^="sign-in"][data-issuer="${p.issuer}"]`);
    check(await link.count() === 1, `${await link.count()} sign-in links for ${p.issuer}`);
    await link.click();
    await login.waitFor({ timeout: STEP_TIMEOUT });
    const at = new URL(page.url());
    check(at.origin === issuer.origin, `the login form is at ${page.url()}, not at the provider ${p.issuer}`);
    // The console sent the browser with PKCE, state and nonce; the
    // provider's page names the client it signs in to.
    const client = (await page.locator('#client').innerText()).trim();
    check(client !== '', 'the provider\'s login page names no client');
  });

  await step('sign in at the provider', async () => {
    await login.locator('input[name="username"]').fill(p.login);
    await login.locator('input[name="password"]').fill(p.password);
    await login.locator('button[type="submit"]').click();
    // The first sign-in of this person to the console asks for consent.
    await consent.or(page.locator('#whoami')).or(page.locator('#error')).first().waitFor({ timeout: STEP_TIMEOUT });
    if (await page.locator('#error').count()) {
      fail(`the provider answered the login with an error: ${(await page.locator('#error').innerText()).trim()}`);
    }
    check(await consent.count() === 1, `no consent page after signing in; the browser is at ${page.url()}`);
    const user = (await page.locator('#user').innerText()).trim();
    check(user.toLowerCase() === p.login.toLowerCase(), `the consent page asks for ${JSON.stringify(user)}, want ${p.login}`);
  });

  await step('consent: back in the console, signed in', async () => {
    await consent.locator('button[type="submit"]').click();
    await page.locator('#whoami, #error').first().waitFor({ timeout: STEP_TIMEOUT });
    if (await page.locator('#error').count()) {
      fail(`the console refused the sign-in: ${(await page.locator('#error').innerText()).trim()}`);
    }
    const at = new URL(page.url());
    check(at.origin === base.origin && at.pathname === `${base.pathname}clusters`,
      `after the sign-in the browser is at ${page.url()}, want ${base.pathname}clusters on the console`);
    const who = (await page.locator('#whoami').innerText()).trim();
    data.whoami = who;
    check(who.includes(p.displayName), `#whoami says ${JSON.stringify(who)}; want ${p.displayName}`);
  });

  await step('the session cookie', async () => {
    const cookies = await context.cookies(p.consoleURL);
    const c = cookies.find((c) => c.name === cookieName);
    const shown = (c) => JSON.stringify({ ...c, value: undefined });
    check(c, `no session cookie ${cookieName}; the browser holds ${JSON.stringify(cookies.map((c) => c.name))} for the console`);
    check(c.httpOnly, `the session cookie is not HttpOnly: ${shown(c)}`);
    check(c.secure, `the session cookie is not Secure: ${shown(c)}`);
    check(c.sameSite === 'Lax', `the session cookie is SameSite=${c.sameSite}, want Lax`);
    check(c.path === '/' && c.domain === base.hostname, `the session cookie is for ${c.domain}${c.path}, want the console's host only, path /`);
    check(c.value.length >= 32, `the session cookie's value is ${c.value.length} characters; want a long random ID`);
    // The sign-in in progress ended with the callback.
    for (const other of cookies) {
      check(other.secure, `cookie ${other.name} is not Secure`);
      check(!/signin/.test(other.name), `the sign-in cookie ${other.name} outlived the sign-in`);
    }
    // The tokens stay on the hub: no cookie of the console holds a JWT.
    for (const other of cookies) {
      check(!/^eyJ[\w-]+\.[\w-]+\./.test(other.value), `cookie ${other.name} holds a JWT`);
    }
  });

  await step('the clusters the role allows, and no other', async () => {
    const table = page.locator('table#clusters');
    await table.waitFor({ timeout: STEP_TIMEOUT });
    for (const c of p.visible) {
      await page.locator(`table#clusters tr[data-cluster="${c}"]`).waitFor({ timeout: STEP_TIMEOUT })
        .catch(() => fail(`the clusters table has no row for ${c}`));
    }
    const rows = await table.locator('tr[data-cluster]').evaluateAll((trs) => trs.map((tr) => tr.dataset.cluster));
    data.clusters = rows;
    for (const c of p.hidden) {
      check(!rows.includes(c), `the clusters table shows ${c}, which the role does not allow; rows: ${JSON.stringify(rows)}`);
    }
    // Nor does its page, asked for directly.
    const [group, name] = p.hidden[0].split('/');
    const resp = await page.goto(new URL(`clusters/${encodeURIComponent(group)}/${encodeURIComponent(name)}`, base).toString());
    check(resp && resp.status() >= 400, `${p.hidden[0]}'s page answered ${resp && resp.status()}; want a refusal`);
    check(await page.locator('#error').count() === 1, `${p.hidden[0]}'s page shows no #error`);
    check(await page.locator('table#cluster-assignments').count() === 0, `${p.hidden[0]}'s page shows its role assignments`);
    data.hiddenStatus = resp.status();
    await page.goto(new URL('clusters', base).toString());
    await table.waitFor({ timeout: STEP_TIMEOUT });
  });

  await step('sign out', async () => {
    await page.locator('button#sign-out').click();
    await page.locator('a#sign-in').waitFor({ timeout: STEP_TIMEOUT });
    const left = (await context.cookies(p.consoleURL)).find((c) => c.name === cookieName);
    check(!left, 'the session cookie is still there after signing out');
    await page.goto(new URL('clusters', base).toString());
    await page.locator('a#sign-in').waitFor({ timeout: STEP_TIMEOUT });
    check(await page.locator('table#clusters').count() === 0, 'the clusters table shows after signing out');
  });
});
