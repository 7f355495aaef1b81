/* Telling the agent of a new chat or message they are not looking at: a desktop
 * notification, and a chime while the tab is in the background (the page title's
 * unread count is chat-list.js's). The browser's permission is asked at most once, from
 * a click (choosing a chat), never on page load; the sidebar's button asks again if
 * that first question went unanswered. */

import { els, pageAttentive } from "./dom.js";
import { chime } from "./sound.js";
import { state } from "./state.js";

const NOTIFY_ASKED_KEY = "supportdesk.notifications-asked";

const notificationsSupported = () => "Notification" in window;

const alreadyAsked = () => {
  try {
    return window.localStorage.getItem(NOTIFY_ASKED_KEY) === "1";
  } catch {
    return false;
  }
};

const rememberAsked = () => {
  try {
    window.localStorage.setItem(NOTIFY_ASKED_KEY, "1");
  } catch {
    /* private mode: we may ask again next visit */
  }
};

export const updateNotifyButton = () => {
  els.notify.hidden = !(
    notificationsSupported() &&
    Notification.permission === "default" &&
    alreadyAsked()
  );
};

/* Called from user gestures only; asks at most once, and nothing depends on the answer. */
export const askNotificationPermissionOnce = () => {
  if (!notificationsSupported() || Notification.permission !== "default" || alreadyAsked()) {
    return;
  }
  rememberAsked();
  try {
    const asked = Notification.requestPermission(updateNotifyButton);
    if (asked && typeof asked.then === "function") {
      asked.then(updateNotifyButton, updateNotifyButton);
    }
  } catch {
    /* old browsers without the promise form */
  }
};

export const notifyDesktop = (title, body, chat) => {
  if (pageAttentive() && state.selected === chat.id) return;
  if (!pageAttentive()) chime();
  if (!notificationsSupported() || Notification.permission !== "granted") return;
  try {
    const note = new Notification(title, {
      body: body.slice(0, 200),
      tag: `supportdesk-chat-${chat.id}`,
    });
    note.onclick = () => {
      window.focus();
      // Opens the chat as a click on its list entry does (chats.js, selectChat).
      chat.item.button.click();
      note.close();
    };
  } catch {
    /* some platforms only allow notifications from a service worker */
  }
};

export const setupNotifications = () => {
  els.notify.addEventListener("click", () => {
    try {
      window.localStorage.removeItem(NOTIFY_ASKED_KEY);
    } catch {
      /* ignore */
    }
    askNotificationPermissionOnce();
    els.notify.hidden = true;
  });
};
