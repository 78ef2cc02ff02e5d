// SPDX-License-Identifier: Apache-2.0
// Drives Debian's chromium (headless, through playwright-core) against `nucleus console`
// while a `nucleus run --script` waits for approvals (tests/e2e/test_console_browser.py).
// Usage: node driver.mjs LOGIN_URL SCREENSHOT_DIR
// Prints one JSON document with what it saw; exits non-zero on any failed expectation.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [loginUrl, shots] = process.argv.slice(2);
const seen = { steps: [] };
const TIMEOUT = 240000;

function step(name, extra) {
  seen.steps.push(Object.assign({ name }, extra || {}));
}

const profile = fs.mkdtempSync(path.join(shots, "chromium-profile-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
});
let failed = null;
try {
  const page = browser.pages()[0] || (await browser.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

  const resp = await page.goto(loginUrl, { waitUntil: "load" });
  step("login", { status: resp.status(), url: page.url() });
  await page.waitForSelector("#pods tbody tr", { timeout: TIMEOUT });
  await page.screenshot({ path: path.join(shots, "1-pods.png"), fullPage: true });
  step("pods", { rows: await page.locator("#pods tbody tr").count() });

  await page.locator("#pods tbody tr").first().click();
  await page.waitForSelector("#calls tbody tr", { timeout: TIMEOUT });
  step("calls", { rows: await page.locator("#calls tbody tr").count() });

  // The first pending approval: agent-controlled text must render as text.
  const card1 = page.locator(".approval").first();
  await card1.waitFor({ timeout: TIMEOUT });
  const args1 = await card1.locator(".args").textContent();
  const imgs = await page.locator("img").count();
  const pwned = await page.evaluate(() => window.__pwned === undefined ? null : window.__pwned);
  await page.screenshot({ path: path.join(shots, "2-pending.png"), fullPage: true });
  step("pending", { args: args1, imgs, pwned });
  await card1.locator(".approve-once").click();
  await card1.locator(".result").filter({ hasText: "approved" }).waitFor({ timeout: TIMEOUT });
  await page.screenshot({ path: path.join(shots, "3-approved.png"), fullPage: true });
  step("approved");

  // The second one is refused with a reason.
  const firstId = await card1.getAttribute("data-id");
  await page.locator(".approval:not([data-done])").first().waitFor({ timeout: TIMEOUT });
  const secondId = await page.locator(".approval:not([data-done])").first().getAttribute("data-id");
  if (secondId === firstId) throw new Error("the decided approval is offered again");
  const card2 = page.locator(`.approval[data-id="${secondId}"]`);
  step("pending2", { args: await card2.locator(".args").textContent() });
  // While the pod still runs: its patch, with the flagged paths and their reasons.
  await page.locator("#load-patch").click();
  await page.locator("#flags li").first().waitFor({ timeout: TIMEOUT });
  step("patch", { flags: await page.locator("#flags li").allTextContents(),
                  patch: await page.locator("#patch").textContent() });
  await page.screenshot({ path: path.join(shots, "3b-patch.png"), fullPage: true });
  await card2.locator(".reason").fill("not in this run");
  await card2.locator(".refuse").click();
  await card2.locator(".result").filter({ hasText: "refused" }).waitFor({ timeout: TIMEOUT });
  await page.screenshot({ path: path.join(shots, "4-refused.png"), fullPage: true });
  step("refused");

  // The run ends: its calls keep streaming in, then the stream ends.
  await page.waitForFunction(() => document.querySelector("#pod-state")?.textContent === "exited" ||
    document.querySelector("#pod-state")?.textContent === "failed", null, { timeout: TIMEOUT });
  const calls = await page.locator("#calls tbody tr").count();
  await page.screenshot({ path: path.join(shots, "5-ended.png"), fullPage: true });
  step("ended", { calls, errors });
} catch (e) {
  failed = String(e && e.stack ? e.stack : e);
  try {
    const p = browser.pages()[0];
    if (p) await p.screenshot({ path: path.join(shots, "failure.png"), fullPage: true });
  } catch (e2) { /* best effort */ }
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
seen.failed = failed;
process.stdout.write(JSON.stringify(seen) + "\n");
process.exit(failed ? 1 : 0);
