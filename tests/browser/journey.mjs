#!/usr/bin/env node
// The customer's journey through the web app at a phone's size, in Debian's chromium driven
// by playwright-core: sign in -> balances -> send and watch it confirm -> add the demo
// battery -> enroll it in the sponsored program -> ACTIVE -> buy OVPP by card.
//
// Usage: node tests/browser/journey.mjs --app-url http://127.0.0.1:PORT/app/ --artifacts DIR
// Prints one JSON object to stdout: {"steps": [{name, screenshot, layout, ...outcome}], ...}.
// Every Content-Security-Policy violation on the way (the `securitypolicyviolation` event in any
// document, or chromium's console message) is in "cspViolations"; the last step then checks
// that the policy is enforced at all (an injected inline script must not run).
// A failed step ends the journey with {"error": "...", "failedStep": name} (exit code 1),
// after saving a screenshot of where it stopped. Tests assert on the printed outcomes.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: options } = parseArgs({
  options: {
    'app-url': { type: 'string' },
    artifacts: { type: 'string' },
    email: { type: 'string', default: 'alice@example.com' },
    chromium: { type: 'string', default: process.env.CHROMIUM_PATH || '/usr/bin/chromium' },
    'admin-token': { type: 'string' }, // the demo utility's administrator: announces the events
    'device-command': { type: 'string' }, // JSON argv of `ovpp-wallet dev device` (--enrollment is added)
  },
});
const APP_URL = options['app-url'];
const ARTIFACTS = options.artifacts;
const SEND_TO = '0x000000000000000000000000000000000000dEaD';
const SLOW = 90_000;
const SERIAL = `VS-BROWSER-${Date.now()}`;
fs.mkdirSync(ARTIFACTS, { recursive: true });

const report = { steps: [], console: [], cspViolations: [] };
let currentStep = 'launch';
let device = null; // the simulated battery (`ovpp-wallet dev device`) while it runs
let cspProbe = null; // while the policy-enforced step provokes a violation on purpose: its list
const browser = await chromium.launch({
  executablePath: options.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
const page = await context.newPage();
page.setDefaultTimeout(20_000);
function recordViolation(violation) {
  (cspProbe ?? report.cspViolations).push({ step: currentStep, ...violation });
}
await context.exposeBinding('reportCspViolation', (_source, violation) => recordViolation(violation));
await context.addInitScript(() => {
  document.addEventListener('securitypolicyviolation', (event) => window.reportCspViolation({
    document: event.documentURI, directive: event.effectiveDirective, blocked: event.blockedURI,
    source: event.sourceFile ? `${event.sourceFile}:${event.lineNumber}` : '',
  }));
});
page.on('console', (message) => {
  if (message.type() !== 'error') return;
  report.console.push(message.text());
  if (/Content[ -]Security[ -]Policy/i.test(message.text())) recordViolation({ console: message.text() });
});
page.on('pageerror', (error) => report.console.push(`pageerror: ${error.message}`));

/** What the acceptance asks of every screen: no horizontal scroll, tap targets >= 44 px. */
async function layout() {
  return page.evaluate(() => {
    const controls = [...document.querySelectorAll('button, a[href], input, select, textarea')]
      .filter((element) => element.type !== 'hidden')
      .map((element) => ({ element, box: element.getBoundingClientRect() }))
      .filter(({ element, box }) => box.width > 0 && box.height > 0 && getComputedStyle(element).visibility !== 'hidden');
    return {
      scrollWidth: document.scrollingElement.scrollWidth,
      innerWidth: window.innerWidth,
      controls: controls.length,
      smallTapTargets: controls.filter(({ box }) => box.height < 44).map(({ element, box }) =>
        `${element.tagName.toLowerCase()} "${(element.textContent || element.getAttribute('aria-label') || element.name || '').trim().slice(0, 40)}" ${Math.round(box.height)}px`),
      unlabelledInputs: [...document.querySelectorAll('input:not([type=hidden]), select')]
        .filter((input) => !input.labels?.length && !input.getAttribute('aria-label')).map((input) => input.name || input.placeholder),
    };
  });
}

async function step(name, action) {
  currentStep = name;
  const started = Date.now();
  const outcome = (await action()) ?? {};
  const screenshot = path.join(ARTIFACTS, `${String(report.steps.length + 1).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: screenshot, fullPage: true });
  report.steps.push({ name, seconds: (Date.now() - started) / 1000, screenshot, layout: await layout(), ...outcome });
}

/** Bytes (headers included) of everything under /app/ this document fetched, by path. */
function appBytesTransferred() {
  return page.evaluate(() => Object.fromEntries(
    [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')]
      .filter((entry) => new URL(entry.name).pathname.startsWith('/app/'))
      .map((entry) => [new URL(entry.name).pathname, entry.transferSize])));
}

const text = (selector) => page.locator(selector).first().innerText();
const balance = async (symbol) => (await text(`[data-balance="${symbol}"]`)).trim();

const started = Date.now();
try {
  await step('sign-in', async () => {
    await page.goto(APP_URL);
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await page.waitForLoadState('networkidle');
    report.firstLoadBytes = await appBytesTransferred(); // cold cache: the app's own files
    return { heading: await text('main h2') };
  });

  await step('wallet', async () => {
    // by keyboard: Tab reaches "Sign in" (after the skip link) with a visible focus ring
    const focusPath = [];
    for (let presses = 0; presses < 5; presses += 1) {
      await page.keyboard.press('Tab');
      const focused = await page.evaluate(() => ({
        text: document.activeElement.textContent.trim(),
        outline: getComputedStyle(document.activeElement).outlineStyle,
      }));
      focusPath.push(focused);
      if (focused.text === 'Sign in') break;
    }
    await page.keyboard.press('Enter');
    await page.locator('input[name=login]').fill(options.email);
    await page.locator('input[name=password]').fill('any password');
    await page.locator('button[type=submit]').click();
    // offline_access (a refresh token) needs the customer's consent, on a page of the provider
    const consent = page.locator('form:has(input[name=prompt][value=consent]) button[type=submit]');
    await consent.waitFor();
    await consent.click();
    await page.waitForURL(/\/app\/#wallet$/);
    await page.locator('[data-balance="OVPP"]').waitFor();
    return { focusPath, email: await text('main strong'), balances: { OVPP: await balance('OVPP'), USDC: await balance('USDC') } };
  });

  await step('send-quote', async () => {
    await page.getByRole('link', { name: 'Send' }).first().click();
    await page.getByLabel('Token').selectOption('OVPP');
    await page.getByLabel('To (wallet address)').fill(SEND_TO);
    await page.getByLabel('Amount').fill('5');
    await page.getByLabel('Pay the network fee in').selectOption('STABLECOIN');
    await page.getByRole('button', { name: 'Review' }).click();
    return { fee: (await text('#quote-fee')).trim() };
  });

  await step('send-confirmed', async () => {
    await page.getByRole('button', { name: 'Confirm and send' }).click();
    await page.locator('#transfer-status [data-status="CONFIRMED"]').waitFor({ timeout: SLOW });
    return {
      status: await page.locator('#transfer-status [data-status]').getAttribute('data-status'),
      via: await page.locator('#transfer-status').getAttribute('data-via'),
    };
  });

  await step('history', async () => {
    // The activity feed: the transfer just sent and its fee, and what came in (the demo's
    // funding), newest first.
    await page.getByRole('link', { name: 'Activity' }).click();
    await page.locator('#activity li[data-kind="SENT"]').first().waitFor({ timeout: SLOW });
    // Shown in flight first; once indexed, walletActivity pushes the on-chain send and its fee.
    await page.locator('#activity li[data-kind="FEE"]').first().waitFor({ timeout: SLOW });
    return {
      latest: (await text('#activity li[data-kind="SENT"]')).trim(),
      incoming: (await text('#activity li.incoming')).trim(),
      kinds: await page.locator('#activity li').evaluateAll((items) => items.map((item) => item.dataset.kind)),
    };
  });

  await step('session-renewed', async () => {
    // The access token expires (here: is replaced by one the API refuses); the app renews it
    // with its refresh token and carries on, instead of sending the customer to sign in.
    const before = await page.evaluate(() => ({
      refresh: sessionStorage.getItem('ovpp.refreshToken'),
    }));
    await page.evaluate(() => sessionStorage.setItem('ovpp.accessToken', 'expired.access.token'));
    await page.getByRole('link', { name: 'Wallet' }).click();
    await page.locator('[data-balance="OVPP"]').waitFor();
    await page.waitForFunction(() => !document.querySelector('[data-pending]'), null, { timeout: SLOW });
    const after = await page.evaluate(() => ({
      access: sessionStorage.getItem('ovpp.accessToken'),
      refresh: sessionStorage.getItem('ovpp.refreshToken'),
    }));
    return {
      hadRefreshToken: Boolean(before.refresh),
      accessRenewed: Boolean(after.access) && after.access !== 'expired.access.token',
      signInShown: await page.getByRole('button', { name: 'Sign in' }).isVisible(),
      balances: { OVPP: await balance('OVPP') },
    };
  });

  await step('device-programs', async () => {
    await page.getByRole('link', { name: 'Devices' }).click();
    await page.getByLabel('Model').selectOption({ label: 'Voltstack VS-13.5' });
    await page.getByLabel('Serial number').fill(SERIAL);
    await page.getByLabel('Street address').fill('1 Market St');
    await page.getByLabel('City').fill('San Francisco');
    await page.getByLabel('State or region code').fill('CA');
    await page.getByLabel('Postal code').fill('94105');
    await page.getByLabel('Country code').fill('US');
    await page.getByRole('button', { name: 'Add device' }).click();
    await page.locator('[data-program-name="Sponsored Home Battery Program"]').waitFor();
    return {
      device: (await text(`li.device:has-text("${SERIAL}") h3`)).trim(),
      programs: await page.locator('[data-program-name]').evaluateAll((items) => items.map((item) => item.dataset.programName)),
    };
  });

  await step('enrollment-check', async () => {
    await page.getByRole('button', { name: 'Enroll in Sponsored Home Battery Program' }).click();
    await page.locator('#enrollment-check').waitFor();
    return {
      fee: await page.locator('#enrollment-check [data-fee]').getAttribute('data-fee'),
      payer: await page.locator('#enrollment-check [data-payer]').getAttribute('data-payer'),
    };
  });

  await step('enrolled-active', async () => {
    await page.getByRole('button', { name: 'Confirm enrollment' }).click();
    await page.locator('#enrollment-status [data-status="ACTIVE"]').waitFor({ timeout: SLOW });
    await page.getByRole('link', { name: 'Devices' }).click(); // the list shows it too
    const listed = page.locator(`li.device:has-text("${SERIAL}") [data-enrollment-status]`).first();
    await listed.waitFor();
    return { status: await listed.getAttribute('data-enrollment-status') };
  });

  // Demand response: the simulated battery of the enrollment, the admin's events, the customer's
  // limits and opt-out, and the device's live state during an event.
  const panel = page.locator('section.events').first();
  await panel.waitFor();
  const enrollmentId = await panel.getAttribute('data-enrollment-id');
  const programId = await panel.getAttribute('data-program-id');
  const [command, ...argv] = JSON.parse(options['device-command']);
  device = spawn(command, [...argv, '--enrollment', enrollmentId], { stdio: 'ignore' });
  const announce = async (startsInSeconds, key) => {
    const start = new Date(Date.now() + startsInSeconds * 1000).toISOString();
    const response = await fetch(new URL('/graphql', APP_URL), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${options['admin-token']}` },
      body: JSON.stringify({
        query: 'mutation($input: CreateEventInput!) { createEvent(input: $input) { __typename ... on DemandResponseEvent { id } } }',
        variables: { input: { programId, start, durationMinutes: 10, signal: { type: 'LOAD_DISPATCH', targetKw: 3 }, idempotencyKey: `${key}-${SERIAL}` } },
      }),
    });
    return (await response.json()).data.createEvent.id;
  };

  await step('opted-out', async () => {
    await panel.getByLabel('Keep at least (%)').fill('30');
    await panel.getByRole('button', { name: 'Save limits' }).click();
    await panel.getByText('Saved').waitFor();
    const eventId = await announce(3600, 'later');
    await page.locator(`#next-event[data-event-id="${eventId}"]`).waitFor({ timeout: SLOW });
    await page.getByRole('button', { name: 'Sit this one out' }).click();
    await page.locator(`#next-event[data-event-id="${eventId}"][data-response="OPT_OUT"]`).waitFor();
    return { response: 'OPT_OUT' };
  });

  let soonId;
  await step('next-event', async () => {
    soonId = await announce(25, 'soon');
    const next = page.locator(`#next-event[data-event-id="${soonId}"]`);
    await next.waitFor({ timeout: SLOW });
    return { status: await next.getAttribute('data-event-status'), keeps: (await next.textContent()).includes('keeps 30 %') };
  });

  await step('event-live', async () => {
    await page.waitForFunction((id) => {
      const live = document.querySelector(`#next-event[data-event-id="${id}"] #live-state`);
      return live && Number(live.dataset.powerKw) < 0;
    }, soonId, { timeout: SLOW });
    const live = page.locator('#live-state');
    return { powerKw: Number(await live.getAttribute('data-power-kw')), soc: Number(await live.getAttribute('data-soc')) };
  });
  device.kill('SIGINT');
  device = null;

  let before;
  await step('card-form', async () => {
    await page.getByRole('link', { name: 'Buy' }).click();
    await page.locator('[data-balance="OVPP"]').waitFor();
    before = await balance('OVPP');
    await page.getByLabel('Amount to pay (USD, fee included)').fill('10');
    await page.getByRole('button', { name: 'See price' }).click();
    const tokens = (await text('#onramp-tokens')).replace(' OVPP', '').trim();
    await page.getByRole('button', { name: 'Continue to payment' }).click();
    await page.getByLabel('Card number').fill('4242424242424242');
    await page.getByLabel('Expiry month (MM)').fill('12');
    await page.getByLabel('Expiry year (YY)').fill('34');
    await page.getByLabel('Security code (CVC)').fill('123');
    await page.getByLabel('Postal code').fill('94105');
    return { balanceBefore: before, tokens };
  });

  await step('bought', async () => {
    await page.getByRole('button', { name: /^Pay \$/ }).click();
    await page.locator('#payment-status [data-status="DELIVERED"]').waitFor({ timeout: SLOW });
    await page.waitForFunction((previous) => document.querySelector('[data-balance="OVPP"]').textContent.trim() !== previous, before);
    return { status: 'DELIVERED', balanceAfter: await balance('OVPP') };
  });

  await step('signed-out', async () => {
    // Signing out revokes the refresh token at the provider: a copy of it renews nothing.
    const refreshToken = await page.evaluate(() => sessionStorage.getItem('ovpp.refreshToken'));
    const { tokenEndpoint, revocationEndpoint, clientId } = await page.evaluate(async () => {
      const settings = await (await fetch('/app/config.json')).json();
      const provider = await (await fetch(`${settings.issuer}/.well-known/openid-configuration`)).json();
      return {
        tokenEndpoint: provider.token_endpoint,
        revocationEndpoint: provider.revocation_endpoint,
        clientId: settings.clientId,
      };
    });
    const revoked = page.waitForResponse((response) => response.url() === revocationEndpoint);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    const revocation = await revoked;
    // One try only: a refresh token is single-use, so a second try would fail anyway.
    const renewalAfterSignOut = await page.evaluate(async ({ endpoint, token, client }) => {
      const response = await fetch(endpoint, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: token, client_id: client }),
      });
      return { status: response.status, error: (await response.json()).error };
    }, { endpoint: tokenEndpoint, token: refreshToken, client: clientId });
    return {
      hadRefreshToken: Boolean(refreshToken),
      tokensLeft: await page.evaluate(() => Object.keys(sessionStorage).filter((key) => key.includes('Token'))),
      revocationStatus: revocation.status(),
      renewalAfterSignOut,
    };
  });

  await step('policy-enforced', async () => {
    // The policy is real: a script injected into the page (as an XSS would) does not run.
    cspProbe = [];
    const probe = await page.evaluate(async () => {
      const violation = new Promise((resolve) => {
        document.addEventListener('securitypolicyviolation', (event) => resolve(event.effectiveDirective), { once: true });
        setTimeout(() => resolve(null), 5000);
      });
      const script = document.createElement('script');
      script.textContent = 'window.injectedScriptRan = true;';
      document.body.append(script);
      return { injectedScriptRan: window.injectedScriptRan === true, directive: await violation };
    });
    // Both of the journey's detectors must have seen it (they report after the page's event).
    const seen = () => ({
      events: cspProbe.filter((violation) => violation.directive).length,
      consoleMessages: cspProbe.filter((violation) => violation.console).length,
    });
    for (let waited = 0; (!seen().events || !seen().consoleMessages) && waited < 5000; waited += 100) {
      await page.waitForTimeout(100);
    }
    const detected = seen();
    cspProbe = null;
    return { ...probe, detected };
  });
} catch (error) {
  report.error = String(error?.message ?? error).split('\n').slice(0, 6).join('\n');
  report.failedStep = currentStep;
  await page.screenshot({ path: path.join(ARTIFACTS, `failed-${currentStep}.png`), fullPage: true }).catch(() => {});
} finally {
  device?.kill('SIGINT');
  report.seconds = (Date.now() - started) / 1000;
  await browser.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(report.error ? 1 : 0);
