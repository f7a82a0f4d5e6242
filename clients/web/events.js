// A device's demand response on its card: the next event (live while it runs: the device's power
// and state of charge), opting out before it starts, and the limits the program keeps to.
import { gql, subscribe } from './api.js';
import { announce, field, h, message, statusBadge } from './screens.js';

const REFRESH_MILLISECONDS = 3000;

function nextEvent(events) {
  return events.find((event) => event.status === 'ACTIVE')
    ?? events.find((event) => event.status === 'SCHEDULED');
}

function when(iso) {
  return new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

function asked(event) {
  if (event.signal === 'LOAD_DISPATCH') return `discharge ${event.targetKw} kW`;
  return `level ${event.level} of 3${event.targetKw ? ` (about ${event.targetKw} kW)` : ''}`;
}

function eventView(event, enrollment, refresh) {
  const state = enrollment.deviceState;
  const live = event.status === 'ACTIVE' && state
    ? h('p', { id: 'live-state', dataset: { powerKw: state.powerKw, soc: state.stateOfChargePercent } },
      `Now: ${state.powerKw > 0 ? 'drawing' : 'giving'} ${Math.abs(state.powerKw).toFixed(2)} kW · battery ${state.stateOfChargePercent.toFixed(1)} %`)
    : null;
  const declined = event.response === 'OPT_OUT';
  const optOut = event.status === 'SCHEDULED' && !declined
    ? h('button', { type: 'button', onclick: async (click) => {
      click.target.disabled = true;
      const { optOut: result } = await gql('OptOut', { input: { eventId: event.id } });
      if (result.__typename !== 'OptedOut') click.target.replaceWith(message(result.message));
      else { announce('You will sit this event out'); refresh(); }
    } }, 'Sit this one out')
    : null;
  return h('div', { class: 'event', id: 'next-event', dataset: { eventId: event.id, eventStatus: event.status, response: event.response ?? '' } },
    h('p', {}, h('strong', {}, event.status === 'ACTIVE' ? 'Event now' : 'Next event'), ' ', statusBadge(event.status, 'status')),
    h('p', { class: 'muted small' }, `${when(event.start)} – ${when(event.end)} · ${asked(event)} · keeps ${event.socFloorPercent} %`),
    declined ? h('p', { class: 'muted small' }, event.optedOutBy === 'PREFERENCES' ? 'Outside your limits: your device skips it.' : 'You are sitting this one out.') : null,
    live, optOut);
}

function preferencesForm(enrollment, refresh) {
  const current = enrollment.preferences;
  const reserve = h('input', { name: 'reserveSocPercent', type: 'number', min: '0', max: '100', value: current.reserveSocPercent, inputmode: 'numeric' });
  const readyBy = h('input', { name: 'readyBy', type: 'time', value: current.readyBy ?? '' });
  const target = h('input', { name: 'targetSocPercent', type: 'number', min: '0', max: '100', value: current.targetSocPercent ?? '', inputmode: 'numeric' });
  const status = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'preferences', novalidate: true },
    h('h4', {}, 'My limits'),
    field('Keep at least (%)', reserve, 'The battery never goes below this during an event.'),
    field('Ready by (UTC)', readyBy),
    field('Charged to (%) by then', target),
    h('button', { type: 'submit' }, 'Save limits'),
    status);
  form.addEventListener('submit', async (submit) => {
    submit.preventDefault();
    const input = {
      enrollmentId: enrollment.id,
      reserveSocPercent: Number(reserve.value),
      readyBy: readyBy.value || null,
      targetSocPercent: target.value === '' ? null : Number(target.value),
    };
    const { setEnrollmentPreferences: result } = await gql('SetEnrollmentPreferences', { input });
    if (result.__typename !== 'EnrollmentPreferences') status.replaceChildren(message(result.message));
    else { status.replaceChildren(message('Saved', 'muted')); refresh(); }
  });
  return form;
}

/** The demand-response panel of an ACTIVE enrollment; it refreshes itself while shown. */
export function deviceEvents(enrollmentId, programId) {
  const eventPanel = h('div', {}, h('p', { class: 'muted small' }, 'No event announced.'));
  const panel = h('section', { class: 'events', dataset: { enrollmentId, programId } }, h('h4', {}, 'Demand response'), eventPanel);
  let form = null;
  let stop = null;
  const refresh = async () => {
    if (!panel.isConnected && form) { stop?.(); return; }
    const { viewer } = await gql('EnrollmentEvents');
    const enrollment = viewer.enrollments.find((candidate) => candidate.id === enrollmentId);
    if (!enrollment) return;
    const event = nextEvent(enrollment.events);
    eventPanel.replaceChildren(event ? eventView(event, enrollment, refresh) : h('p', { class: 'muted small' }, 'No event announced.'));
    if (!form) { form = preferencesForm(enrollment, refresh); panel.append(form); }
    setTimeout(() => { if (panel.isConnected) refresh(); else stop?.(); }, REFRESH_MILLISECONDS);
  };
  subscribe('ProgramEvents', {}, { onNext: () => refresh(), onError: () => {}, onComplete: () => {} })
    .then((close) => { stop = close; }, () => {});
  refresh();
  return panel;
}
