// Minimal service worker: the app shell works offline; everything else goes to the network.
// Network first, so a deployment is picked up at once; the cache is only the fallback.
const CACHE = 'ovpp-wallet-v2';
const SHELL = ['/app/', '/app/app.css', '/app/app.js', '/app/api.js', '/app/screens.js',
  '/app/events.js',
  '/app/manifest.webmanifest', '/app/icons/icon.svg'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)));
  self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys().then((names) =>
    Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name)))));
  self.clients.claim();
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== location.origin) return;
  if (!SHELL.includes(url.pathname)) return;
  event.respondWith(fetch(event.request).catch(() => caches.match(event.request)));
});
