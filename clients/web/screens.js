// The screens. Each takes <main>, loads what it shows, and renders plain DOM (no innerHTML,
// so nothing the API returns is ever parsed as markup).
import { config, gql, subscribe } from './api.js';
import { deviceEvents } from './events.js';

const FINAL_TRANSACTION_STATUSES = new Set(['CONFIRMED', 'FAILED', 'REPLACED']);
const FINAL_ENROLLMENT_STATUSES = new Set(['ACTIVE', 'FAILED', 'UNENROLLED']);
// A card payment's statuses where the buy screen stops polling (the others: REQUIRES_PAYMENT, PAID,
// DELIVERING). REFUND_FAILED: nothing was delivered and the refund to the card failed.
const FINAL_PAYMENT_STATUSES = new Set(['DELIVERED', 'PAYMENT_FAILED', 'CANCELED', 'REFUNDED', 'DISPUTED', 'DELIVERY_FAILED', 'REFUND_FAILED']);
const TOKEN_LABELS = { OVPP: 'OVPP', STABLECOIN: 'USD stablecoin (USDC)' };
let fieldCounter = 0;

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? '' : value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

/** A labelled control: the label is a real <label for>, hints are linked by aria-describedby. */
export function field(labelText, control, hint) {
  const id = control.id || `field-${++fieldCounter}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  return h('div', { class: 'field' },
    h('label', { for: id }, labelText),
    control,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null);
}

function select(name, options, value) {
  return h('select', { name },
    options.map(([optionValue, label]) => h('option', { value: optionValue, selected: optionValue === value }, label)));
}

export function announce(text) {
  const announcer = document.getElementById('announcer');
  announcer.textContent = '';
  requestAnimationFrame(() => { announcer.textContent = text; });
}

export function message(text, kind = 'error') {
  return h('p', { class: kind, role: kind === 'error' ? 'alert' : 'status' }, text);
}

function shortAddress(address) {
  return address ? `${address.slice(0, 6)}…${address.slice(-4)}` : '';
}

function money(amount) {
  return `$${Number(amount).toFixed(2)}`; // display only; amounts stay decimal strings on the wire
}

function newIdempotencyKey() {
  return crypto.randomUUID();
}

function sleep(milliseconds) {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

export function statusBadge(status, kind) {
  const tone = /FAILED|CANCELED|REFUNDED|DISPUTED|REPLACED/.test(status) ? 'bad'
    : /CONFIRMED|ACTIVE|DELIVERED/.test(status) ? 'good' : 'pending';
  return h('span', { class: `badge ${tone}`, dataset: { [kind]: status } }, status.replace(/_/g, ' ').toLowerCase());
}

function balanceList(balances) {
  return h('ul', { class: 'balances' }, balances.map((balance) =>
    h('li', {},
      h('span', { class: 'symbol' }, balance.token.symbol),
      h('span', { class: 'amount', dataset: { balance: balance.token.symbol } }, balance.amount),
      balance.pending && balance.pending !== '0'
        ? h('span', { class: 'muted small', dataset: { pending: balance.token.symbol } },
          ` (${balance.pending.startsWith('-') ? '' : '+'}${balance.pending} in flight)`)
        : null)));
}

const inFlight = (viewer) => viewer.wallet.balances.some((balance) => balance.pending !== '0');
const pause = (milliseconds) => new Promise((resolve) => { setTimeout(resolve, milliseconds); });

// ------------------------------------------------------------------------------------ wallet

async function wallet(main) {
  const { viewer } = await gql('Viewer');
  main.replaceChildren(
    h('section', { class: 'card', 'aria-labelledby': 'balances-title' },
      h('h2', { id: 'balances-title' }, 'Balances'),
      balanceList(viewer.wallet.balances),
      viewer.wallet.stale ? h('p', { class: 'muted small', role: 'status' }, 'Catching up with the chain: recent activity may be missing.') : null,
      h('p', { class: 'muted small' }, 'Signed in as ', h('strong', {}, viewer.email ?? 'you')),
      h('p', { class: 'muted small address' }, 'Wallet address: ', h('code', { id: 'wallet-address' }, viewer.wallet.address))),
    h('div', { class: 'actions' },
      h('a', { class: 'button primary', href: '#send' }, 'Send'),
      h('a', { class: 'button', href: '#buy' }, 'Buy by card')));
  if (inFlight(viewer)) {  // shown again once what is in flight has reached the chain's index
    await pause(1000);
    if (main.isConnected && location.hash.startsWith('#wallet')) await wallet(main);
  }
}

// -------------------------------------------------------------------------------------- send

async function send(main) {
  const tokenOptions = Object.entries(TOKEN_LABELS);
  const form = h('form', { class: 'card', novalidate: true },
    h('h2', {}, 'Send tokens'),
    field('Token', select('token', tokenOptions, 'OVPP')),
    field('To (wallet address)', h('input', { name: 'to', required: true, autocomplete: 'off', spellcheck: 'false', pattern: '0x[0-9a-fA-F]{40}', placeholder: '0x…' })),
    field('Amount', h('input', { name: 'amount', required: true, inputmode: 'decimal', pattern: '[0-9]+([.][0-9]+)?', autocomplete: 'off' })),
    field('Pay the network fee in', select('feeToken', tokenOptions, 'STABLECOIN'), 'No gas needed: the fee is taken in this token, unless your utility sponsors it.'),
    h('button', { type: 'submit', class: 'primary' }, 'Review'));
  const outcome = h('div', { id: 'send-outcome' });
  main.replaceChildren(form, outcome);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    const input = Object.fromEntries(new FormData(form));
    outcome.replaceChildren(message('Getting the fee…', 'muted'));
    try {
      const { quoteTransfer: quote } = await gql('QuoteTransfer', { input: { token: input.token, to: input.to, amount: input.amount, feeToken: input.feeToken } });
      const feeText = quote.sponsored
        ? `Network fee: paid by ${quote.sponsorName ?? 'your utility'}`
        : `Network fee: ${quote.feeAmount} ${quote.feeToken.symbol}`;
      const confirm = h('button', { type: 'button', class: 'primary' }, 'Confirm and send');
      const summary = h('section', { class: 'card', 'aria-labelledby': 'review-title' },
        h('h2', { id: 'review-title' }, 'Review'),
        h('dl', { class: 'summary' },
          h('dt', {}, 'Send'), h('dd', {}, `${input.amount} ${input.token === 'OVPP' ? 'OVPP' : 'USDC'}`),
          h('dt', {}, 'To'), h('dd', { class: 'address' }, input.to),
          h('dt', {}, 'Fee'), h('dd', { id: 'quote-fee' }, feeText)),
        confirm);
      outcome.replaceChildren(summary);
      confirm.focus();
      confirm.addEventListener('click', async () => {
        confirm.disabled = true;
        try {
          const { transfer } = await gql('Transfer', { input: { ...input, quoteId: quote.id, idempotencyKey: newIdempotencyKey() } });
          if (transfer.__typename !== 'Transaction') {
            confirm.disabled = false;
            summary.append(message(transfer.message));
            return;
          }
          summary.append(transactionStatus(transfer));
        } catch (error) {
          confirm.disabled = false;
          summary.append(message(error.message));
        }
      });
    } catch (error) {
      outcome.replaceChildren(message(error.message));
    }
  });
}

/** The transaction's live status: the subscription, or polling when the socket fails. */
function transactionStatus(transaction) {
  const line = h('p', { id: 'transfer-status', 'aria-live': 'polite' });
  const hash = h('p', { class: 'muted small address' });
  const show = (update) => {
    line.replaceChildren('Status: ', statusBadge(update.status, 'status'));
    if (update.hash) hash.textContent = `Transaction ${update.hash}`;
    if (FINAL_TRANSACTION_STATUSES.has(update.status)) announce(`Transfer ${update.status.toLowerCase()}`);
  };
  show(transaction);
  let final = FINAL_TRANSACTION_STATUSES.has(transaction.status);
  const poll = async () => {
    line.dataset.via = 'polling';
    while (!final && document.contains(line)) {
      await sleep(1000);
      const { transaction: current } = await gql('Transaction', { id: transaction.id });
      show(current);
      final = FINAL_TRANSACTION_STATUSES.has(current.status);
    }
  };
  if (!final) {
    subscribe('TransactionUpdates', { id: transaction.id }, {
      onNext: ({ transactionUpdates }) => {
        line.dataset.via = 'subscription';
        show(transactionUpdates);
        final = FINAL_TRANSACTION_STATUSES.has(transactionUpdates.status);
      },
      onError: () => poll(),
      onComplete: () => { if (!final) poll(); },
    }).catch(() => poll());
  }
  return h('div', {}, line, hash);
}

// ---------------------------------------------------------------------------------- activity

const INCOMING_KINDS = new Set(['RECEIVED', 'PURCHASE', 'REWARD']);
const KIND_WORDS = {
  SENT: 'Sent', RECEIVED: 'Received', FEE: 'Network fee', PURCHASE: 'Bought by card',
  ENROLLMENT_FEE: 'Enrollment fee', REWARD: 'Reward',
};

function activityItem(node) {
  const incoming = INCOMING_KINDS.has(node.kind);
  const other = node.counterpartyLabel ?? shortAddress(node.counterparty);
  return h('li', { class: incoming ? 'incoming' : 'outgoing', dataset: { kind: node.kind, itemId: node.id } },
    h('p', {}, h('strong', {}, `${incoming ? '+' : '−'}${node.amount} ${node.token.symbol}`),
      ` ${KIND_WORDS[node.kind] ?? node.kind} ${incoming ? 'from' : 'to'} ${other}`),
    h('p', { class: 'muted small' }, new Date(node.timestamp).toLocaleString(), ' · ',
      incoming && node.status === 'PENDING' ? h('span', { class: 'badge pending', dataset: { status: 'INCOMING' } }, 'incoming')
        : statusBadge(node.status, 'status')));
}

async function historyScreen(main) {
  const { viewer } = await gql('Activity', { first: 20 });
  const edges = viewer.wallet.activity.edges;
  const list = h('ul', { class: 'list', id: 'activity' }, edges.map(({ node }) => activityItem(node)));
  main.replaceChildren(h('section', { class: 'card' },
    h('h2', {}, 'Activity'),
    edges.length === 0 ? h('p', { class: 'muted' }, 'Nothing has moved yet.') : list));
  // New and changed items are pushed (an incoming transfer within seconds of its block).
  const close = await subscribe('WalletActivity', {}, {
    onNext: ({ walletActivity }) => {
      if (!main.isConnected || !location.hash.startsWith('#history')) return close?.();
      const shown = list.querySelector(`[data-item-id="${CSS.escape(walletActivity.id)}"]`);
      if (shown) shown.replaceWith(activityItem(walletActivity));
      else list.prepend(activityItem(walletActivity));
      if (!list.isConnected) main.querySelector('section').replaceChildren(h('h2', {}, 'Activity'), list);
      if (INCOMING_KINDS.has(walletActivity.kind)) announce(`${walletActivity.amount} ${walletActivity.token.symbol} incoming`);
    },
    onError: () => {},
  }).catch(() => null);
}

// ----------------------------------------------------------------------------------- devices

async function devices(main) {
  const [{ deviceModels }, { viewer }] = await Promise.all([gql('DeviceModels'), gql('ViewerEnrollments')]);
  const modelOf = (device) => deviceModels.find((model) => model.make === device.make && model.model === device.model);
  const deviceCards = viewer.devices.map((device) => {
    const enrollments = viewer.enrollments.filter((enrollment) => enrollment.device.id === device.id);
    const programsPanel = h('div', {});
    const find = h('button', { type: 'button' }, 'Find programs');
    find.addEventListener('click', () => showPrograms(programsPanel, device, modelOf(device), find));
    return h('li', { class: 'card device', dataset: { deviceId: device.id } },
      h('h3', {}, `${device.make} ${device.model}`),
      h('p', { class: 'muted small' }, `${device.deviceType.replace(/_/g, ' ').toLowerCase()} · serial ${device.serial}`),
      h('p', { class: 'muted small' }, `${device.siteAddress.line1}, ${device.siteAddress.city} ${device.siteAddress.region} ${device.siteAddress.postalCode}`),
      enrollments.length ? h('ul', { class: 'list' }, enrollments.map((enrollment) =>
        h('li', {}, h('span', {}, enrollment.program.name), ' ', statusBadge(enrollment.status, 'enrollmentStatus'),
          enrollment.status === 'ACTIVE' && enrollment.protocol === 'OPENADR_2_0B' ? deviceEvents(enrollment.id, enrollment.program.id) : null))) : null,
      find, programsPanel);
  });

  const modelSelect = select('model', deviceModels.map((model, index) => [String(index), `${model.make} ${model.model}`]), '0');
  const form = h('form', { class: 'card', novalidate: true },
    h('h2', {}, 'Add a device'),
    field('Model', modelSelect),
    field('Serial number', h('input', { name: 'serial', required: true, autocomplete: 'off' }), 'Stays with us: only a hash of make, model and serial goes on chain.'),
    h('fieldset', {},
      h('legend', {}, 'Where it is installed'),
      field('Street address', h('input', { name: 'line1', required: true, autocomplete: 'address-line1' })),
      field('City', h('input', { name: 'city', required: true, autocomplete: 'address-level2' })),
      field('State or region code', h('input', { name: 'region', required: true, autocomplete: 'address-level1', placeholder: 'CA' })),
      field('Postal code', h('input', { name: 'postalCode', required: true, autocomplete: 'postal-code', inputmode: 'numeric' })),
      field('Country code', h('input', { name: 'country', required: true, autocomplete: 'country', value: 'US', maxlength: '2' }))),
    h('button', { type: 'submit', class: 'primary' }, 'Add device'));
  const formOutcome = h('div', {});
  form.append(formOutcome);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    const values = Object.fromEntries(new FormData(form));
    const model = deviceModels[Number(values.model)];
    try {
      const { addDevice } = await gql('AddDevice', { input: {
        make: model.make, model: model.model, serial: values.serial,
        siteAddress: { line1: values.line1, city: values.city, region: values.region, postalCode: values.postalCode, country: values.country },
      } });
      if (addDevice.__typename !== 'Device') return formOutcome.replaceChildren(message(addDevice.message));
      announce(`Added ${model.make} ${model.model}`);
      await devices(main);
      main.querySelector(`[data-device-id="${CSS.escape(addDevice.id)}"] button`)?.click();
    } catch (error) {
      formOutcome.replaceChildren(message(error.message));
    }
  });

  main.replaceChildren(
    h('section', { 'aria-labelledby': 'devices-title' },
      h('h2', { id: 'devices-title' }, 'My devices'),
      deviceCards.length ? h('ul', { class: 'plain' }, deviceCards) : h('p', { class: 'muted' }, 'No devices yet.')),
    form);
}

async function showPrograms(panel, device, model, button) {
  button.disabled = true;
  panel.replaceChildren(message('Looking for programs…', 'muted'));
  try {
    const { programs } = await gql('Programs', { siteAddress: device.siteAddress, deviceType: device.deviceType });
    if (!programs.length) return panel.replaceChildren(message('No program serves this address for this device yet.', 'muted'));
    panel.replaceChildren(h('h4', {}, 'Programs open to it'), h('ul', { class: 'plain' }, programs.map((program) => {
      const details = h('div', {});
      const check = h('button', { type: 'button', class: 'primary' }, `Enroll in ${program.name}`);
      check.addEventListener('click', () => checkThenEnroll(details, device, model, program, check));
      return h('li', { class: 'program', dataset: { programName: program.name } },
        h('p', {}, h('strong', {}, program.name), ` · ${program.utility}`),
        h('p', { class: 'small' }, program.description),
        h('p', { class: 'small' }, `Connection fee ${program.feeAmount} OVPP, `,
          program.feePayer === 'SPONSOR' ? 'paid by the utility' : 'paid by you',
          program.incentives ? ` · bonus ${program.incentives.enrollmentBonus} OVPP, ${program.incentives.perEventReward} OVPP per event` : ''),
        check, details);
    })));
  } catch (error) {
    panel.replaceChildren(message(error.message));
    button.disabled = false;
  }
}

async function checkThenEnroll(details, device, model, program, button) {
  const protocol = program.protocols.find((candidate) => model?.protocols.includes(candidate)) ?? program.protocols[0];
  const paymentMethod = program.feePayer === 'SPONSOR' ? 'SPONSOR' : 'WALLET';
  const input = { deviceId: device.id, programId: program.id, protocol, paymentMethod };
  button.disabled = true;
  try {
    const { checkEnrollment: check } = await gql('CheckEnrollment', { input });
    const payer = check.feePayer === 'SPONSOR' ? 'the utility' : check.feePayer === 'CARD' ? 'your card' : 'your wallet';
    const confirm = h('button', { type: 'button', class: 'primary', disabled: !check.ready }, 'Confirm enrollment');
    details.replaceChildren(h('dl', { class: 'summary', id: 'enrollment-check' },
      h('dt', {}, 'Fee'), h('dd', { dataset: { fee: check.fee } }, `${check.fee} OVPP`),
      h('dt', {}, 'Paid by'), h('dd', { dataset: { payer: check.feePayer } }, payer),
      h('dt', {}, 'Gas'), h('dd', {}, check.gasSponsored ? 'sponsored' : `${check.gasFee} OVPP`),
      h('dt', {}, 'Protocol'), h('dd', {}, protocol.replace(/_/g, ' '))),
    check.ready ? null : h('ul', { class: 'error' }, check.failingChecks.map((failing) => h('li', {}, failing.reason))),
    confirm);
    confirm.focus();
    confirm.addEventListener('click', async () => {
      confirm.disabled = true;
      try {
        const { enroll } = await gql('Enroll', { input: { ...input, idempotencyKey: newIdempotencyKey() } });
        if (enroll.__typename !== 'Enrollment') {
          confirm.disabled = false;
          return details.append(message(enroll.message));
        }
        const line = h('p', { id: 'enrollment-status', 'aria-live': 'polite' }, 'Enrollment: ', statusBadge(enroll.status, 'status'));
        details.append(line);
        let status = enroll.status;
        while (!FINAL_ENROLLMENT_STATUSES.has(status) && document.contains(line)) {
          await sleep(1000);
          const { viewer } = await gql('ViewerEnrollments');
          const current = viewer.enrollments.find((enrollment) => enrollment.id === enroll.id);
          status = current?.status ?? status;
          line.replaceChildren('Enrollment: ', statusBadge(status, 'status'));
          if (current?.error) line.append(` ${current.error}`);
        }
        announce(`Enrollment ${status.toLowerCase()}`);
      } catch (error) {
        confirm.disabled = false;
        details.append(message(error.message));
      }
    });
  } catch (error) {
    button.disabled = false;
    details.replaceChildren(message(error.message));
  }
}

// --------------------------------------------------------------------------------------- buy

let stripeJsPromise;
function loadStripeJs(url) {
  stripeJsPromise ??= new Promise((resolve, reject) => {
    const script = h('script', { src: url });
    script.onload = () => resolve(window.Stripe);
    script.onerror = () => reject(new Error('The card form could not be loaded.'));
    document.head.append(script);
  });
  return stripeJsPromise;
}

/** The OVPP balance; with `settled`, once nothing is in flight (the chain's index has caught up
 * with the relayer), waiting a few seconds at most. */
async function ovppBalance({ settled = false } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const { viewer } = await gql('Viewer');
    if (!settled || !inFlight(viewer) || attempt >= 40) {
      return viewer.wallet.balances.find((balance) => balance.token.symbol === 'OVPP')?.amount ?? '0';
    }
    await pause(250);
  }
}

async function buy(main) {
  const settings = await config();
  const balance = h('span', { class: 'amount', dataset: { balance: 'OVPP' } }, await ovppBalance());
  const header = h('section', { class: 'card' }, h('h2', {}, 'Buy OVPP by card'),
    h('p', {}, 'Your OVPP balance: ', balance));
  if (!settings.stripePublishableKey) {
    return main.replaceChildren(header, message('Card payments are not available here.', 'muted'));
  }
  const form = h('form', { class: 'card', novalidate: true },
    field('Amount to pay (USD, fee included)', h('input', { name: 'fiatAmount', required: true, inputmode: 'decimal', value: '10', pattern: '[0-9]+([.][0-9]{1,2})?' })),
    h('button', { type: 'submit', class: 'primary' }, 'See price'));
  const outcome = h('div', {});
  main.replaceChildren(header, form, outcome);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    const fiatAmount = new FormData(form).get('fiatAmount');
    try {
      const { quoteOnramp: quote } = await gql('QuoteOnramp', { input: { token: 'OVPP', fiatAmount, currency: 'usd' } });
      if (quote.__typename !== 'OnrampQuote') return outcome.replaceChildren(message(quote.message));
      const proceed = h('button', { type: 'button', class: 'primary' }, 'Continue to payment');
      const section = h('section', { class: 'card', 'aria-labelledby': 'onramp-quote-title' },
        h('h2', { id: 'onramp-quote-title' }, 'Your purchase'),
        h('dl', { class: 'summary' },
          h('dt', {}, 'You get'), h('dd', { id: 'onramp-tokens' }, `${quote.tokenAmount} OVPP`),
          h('dt', {}, 'You pay'), h('dd', {}, money(quote.fiatAmount)),
          h('dt', {}, 'Of which fee'), h('dd', {}, money(quote.fee))),
        proceed);
      outcome.replaceChildren(section);
      proceed.focus();
      proceed.addEventListener('click', () => pay(section, proceed, quote, settings, balance));
    } catch (error) {
      outcome.replaceChildren(message(error.message));
    }
  });
}

async function pay(section, proceed, quote, settings, balance) {
  proceed.disabled = true;
  try {
    const { createOnrampPayment: payment } = await gql('CreateOnrampPayment', { input: {
      token: 'OVPP', fiatAmount: quote.fiatAmount, currency: quote.currency, quoteId: quote.id, idempotencyKey: newIdempotencyKey(),
    } });
    if (payment.__typename !== 'OnrampPayment') {
      proceed.disabled = false;
      return section.append(message(payment.message));
    }
    const Stripe = await loadStripeJs(settings.stripeJsUrl);
    const stripe = Stripe(settings.stripePublishableKey);
    const card = stripe.elements().create('card');
    const cardBox = h('div', { id: 'card-element', class: 'card-element' });
    const payButton = h('button', { type: 'button', class: 'primary' }, `Pay ${money(payment.fiatAmount)}`);
    const status = h('p', { id: 'payment-status', 'aria-live': 'polite' });
    section.append(h('div', { role: 'group', 'aria-label': 'Card details' }, h('p', { class: 'small' }, 'Card details'), cardBox), payButton, status);
    proceed.hidden = true;
    card.mount(cardBox);
    labelCardInputs(cardBox);
    cardBox.querySelector('input')?.focus();
    payButton.addEventListener('click', async () => {
      payButton.disabled = true;
      status.replaceChildren('Paying…');
      const result = await stripe.confirmCardPayment(payment.clientSecret, { payment_method: { card } });
      if (result.error) {
        payButton.disabled = false;
        return status.replaceChildren(message(result.error.message || 'The card was declined.'));
      }
      let current = payment;
      while (!FINAL_PAYMENT_STATUSES.has(current.status) && document.contains(status)) {
        status.replaceChildren('Payment: ', statusBadge(current.status, 'status'));
        await sleep(1000);
        const { viewer } = await gql('OnrampPayments', { first: 10 });
        current = viewer.onrampPayments.find((candidate) => candidate.id === payment.id) ?? current;
      }
      status.replaceChildren('Payment: ', statusBadge(current.status, 'status'));
      balance.textContent = await ovppBalance({ settled: true });
      // An alert: screen readers read it at once, so it is not announced a second time.
      if (current.status === 'REFUND_FAILED') return section.append(message(refundFailedExplanation(current)));
      announce(current.status === 'DELIVERED' ? `${payment.tokenAmount} OVPP added to your wallet` : `Payment ${current.status.toLowerCase()}`);
    });
  } catch (error) {
    proceed.disabled = false;
    section.append(message(error.message));
  }
}

/** The customer has neither the tokens nor the money, and nothing more happens on its own: say so,
 * and who returns the money (the backend never refunds a card that refused a refund). */
function refundFailedExplanation(payment) {
  return `Your OVPP could not be delivered, and the ${money(payment.refundFailedAmount)} refund to your card failed `
    + '(the card may be closed or replaced). Your utility\'s support will return the money to you another way.';
}

/** Stripe's card element labels its own inputs; localstripe's stand-in only has placeholders. */
function labelCardInputs(container) {
  const labels = { number: 'Card number', exp_month: 'Expiry month (MM)', exp_year: 'Expiry year (YY)', cvc: 'Security code (CVC)', postal_code: 'Postal code' };
  for (const input of container.querySelectorAll('input')) {
    const label = labels[input.getAttribute('placeholder')];
    if (label && !input.hasAttribute('aria-label')) input.setAttribute('aria-label', label);
    input.setAttribute('inputmode', 'numeric');
    input.setAttribute('autocomplete', 'off');
  }
}

export const screens = { wallet, send, history: historyScreen, devices, buy };
