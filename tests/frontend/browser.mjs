// Opens GraphiQL in headless Chromium, runs a query through its UI and prints the result
// pane's text. Fails if the page asks any other host for anything, or shows no result.
import { chromium } from 'playwright-core';

const [base, query, expected] = process.argv.slice(2);
if (!base || !query || !expected) {
  console.error('usage: node browser.mjs <server url> <query> <text the result must show>');
  process.exit(2);
}
const origin = new URL(base).origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const elsewhere = [];
try {
  const page = await browser.newPage();
  // The page's own complaints, for the test's failure message.
  page.on('console', (message) => console.error(`page: ${message.text()}`));
  page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith('data:') && !url.startsWith('blob:')) {
      elsewhere.push(url);
    }
  });
  await page.goto(`${base}/graphql`, { waitUntil: 'networkidle' });
  const editor = page.locator('.graphiql-query-editor .CodeMirror').first();
  await editor.waitFor({ timeout: 15000 });
  // Replace the editor's text through CodeMirror itself, as typing would.
  await editor.evaluate((element, text) => element.CodeMirror.setValue(text), query);
  // GraphiQL parses the editor's text a moment later; it picks the transport (HTTP, or the
  // WebSocket for a subscription) from that parse, so run only once it has seen this text.
  await page.waitForFunction(
    (text) => {
      const parsed = document.querySelector('.graphiql-query-editor .CodeMirror')?.CodeMirror
        ?.documentAST;
      return parsed?.loc?.source?.body === text;
    },
    query,
    { timeout: 15000 },
  );
  await page.locator('.graphiql-execute-button').click();
  const result = page.locator('.graphiql-response .CodeMirror');
  try {
    await result.getByText(expected).first().waitFor({ timeout: 15000 });
  } catch (error) {
    const shown = await result.evaluate((element) => element.CodeMirror.getValue());
    throw new Error(`${error.message}\nthe result pane shows: ${shown}`);
  }
  const text = await result.evaluate((element) => element.CodeMirror.getValue());
  console.log(JSON.stringify({ result: JSON.parse(text), elsewhere }));
  if (elsewhere.length > 0) {
    console.error(`requests left for other hosts: ${elsewhere.join(', ')}`);
    process.exitCode = 1;
  }
} finally {
  await browser.close();
}
