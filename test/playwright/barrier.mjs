// Test of the harness's barrier: a page, a barrier named params.name, and a
// step after it that records it ran (data.after). With params.hang the
// script then waits forever, for the Go side to stop it.
import { run } from './harness.mjs';

await run(async ({ page, params, step, barrier, data }) => {
  await step('before the barrier', async () => {
    await page.setContent('<h1>waiting</h1>');
  });
  await barrier(params.name);
  await step('after the barrier', async () => {
    await page.setContent('<h1>went on</h1>');
    data.after = params.name;
  });
  if (params.hang) {
    await new Promise(() => {});
  }
});
