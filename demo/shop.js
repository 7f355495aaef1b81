/* The demo shop's own script: what a site does with the widget's JavaScript API
 * (docs/api.md). A "Help" link opens the chat; a signed-in customer is identified, with
 * the signature the shop's server made; a reply that comes while the chat is closed
 * shows as a note on the page. */
window.supportdesk = window.supportdesk || [];
const SIGNED_IN = 'shop-signed-in';
const user = JSON.parse(document.getElementById('shop-user').textContent);
const account = document.getElementById('account');
const signedIn = user && localStorage.getItem(SIGNED_IN) === '1';

if (!user) account.hidden = true;
account.textContent = signedIn ? user.name + ' · Sign out' : 'Sign in';
account.addEventListener('click', (event) => {
  event.preventDefault();
  if (signedIn) localStorage.removeItem(SIGNED_IN);
  else localStorage.setItem(SIGNED_IN, '1');
  location.reload();
});
if (signedIn) supportdesk.push(['identify', user]);

document.getElementById('help').addEventListener('click', (event) => {
  event.preventDefault();
  supportdesk.push(['open']);
});

const toast = document.getElementById('toast');
let chatOpen = false;
supportdesk.push(['on', 'open', () => {
  chatOpen = true;
  toast.hidden = true;
}]);
supportdesk.push(['on', 'close', () => {
  chatOpen = false;
}]);
supportdesk.push(['on', 'message', (message) => {
  if (chatOpen && !document.hidden) return;
  const author = message.agent ? message.agent.display_name : 'Kettle & Crane';
  toast.textContent = author + ': ' + message.body;
  toast.hidden = false;
}]);
