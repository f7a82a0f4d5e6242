// The shell: sign-in state, the tab router (#wallet, #send, #history, #devices, #buy).
import { SESSION_ENDED, accessToken, finishSignIn, signIn, signOut } from './api.js';
import { h, screens } from './screens.js';

const main = document.getElementById('main');
const nav = document.querySelector('nav.tabs');
const signOutButton = document.getElementById('sign-out');

function showSignIn(message) {
  nav.hidden = true;
  signOutButton.hidden = true;
  const button = h('button', { type: 'button', class: 'primary', onclick: () => signIn().catch((error) => showSignIn(error.message)) }, 'Sign in');
  main.replaceChildren(
    h('section', { class: 'card' },
      h('h2', {}, 'Welcome'),
      h('p', {}, 'Sign in with your utility account to see your wallet, send tokens and enroll your devices.'),
      message ? h('p', { class: 'error', role: 'alert' }, message) : null,
      button),
  );
}

async function route() {
  if (!accessToken()) return showSignIn();
  nav.hidden = false;
  signOutButton.hidden = false;
  const name = (location.hash.slice(1) || 'wallet');
  const screen = screens[name] ?? screens.wallet;
  for (const link of nav.querySelectorAll('a')) {
    if (link.hash === `#${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    await screen(main);
  } catch (error) {
    if (error.code === 'UNAUTHENTICATED') {
      signOut();
      return showSignIn('Your session ended. Please sign in again.');
    }
    main.replaceChildren(h('p', { class: 'error', role: 'alert' }, error.message));
  }
}

// A renewal that failed for good, wherever it happened (a button's action, a polling loop).
addEventListener(SESSION_ENDED, () => showSignIn('Your session ended. Please sign in again.'));

signOutButton.addEventListener('click', () => {
  signOut();
  showSignIn();
});
nav.addEventListener('click', (event) => {
  // the current tab again: show it afresh (a tab bar's usual "refresh")
  if (event.target.closest('a')?.hash === location.hash) route();
});
window.addEventListener('hashchange', () => {
  route().then(() => main.focus({ preventScroll: true }));
});

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('/app/sw.js', { scope: '/app/' }).catch(() => {});
}

if (location.pathname === '/app/callback') {
  finishSignIn().then(route, (error) => showSignIn(error.message));
} else {
  route();
}
