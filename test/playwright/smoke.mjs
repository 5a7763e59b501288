// Smoke test of the harness against the embedded issuer's device page
// (internal/issuer): open the verification URL, sign in, approve, and see
// the "Signed in" page. Parameters: url (verification_uri_complete),
// login, password, displayName.
import { run, check, signInAtIssuer } from './harness.mjs';

await run(async ({ page, params, step, data }) => {
  await step('open the device sign-in page', async () => {
    const resp = await page.goto(params.url);
    check(resp && resp.ok(), `GET ${params.url}: ${resp && resp.status()}`);
    const csp = resp.headers()['content-security-policy'] || '';
    check(csp.includes("default-src 'none'"), `the sign-in page's Content-Security-Policy is ${JSON.stringify(csp)}; want default-src 'none'`);
    await page.locator('input[name="login"]').waitFor();
  });
  await step('sign in and approve', async () => {
    await signInAtIssuer(page, params.login, params.password);
    await page.getByRole('heading', { name: 'Signed in' }).waitFor({ timeout: 20_000 });
    const text = await page.locator('body').innerText();
    check(text.includes(params.displayName), `the page after sign-in says ${JSON.stringify(text)}; want ${params.displayName}`);
    data.finalURL = page.url();
  });
});
