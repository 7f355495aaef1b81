/* The visitor panel's place: a sidebar on the right of every chat, folded away and
 * back with the pane's "About the visitor" button. The choice holds for every chat and
 * is remembered in this browser; on a phone-sized screen (dashboard.css's breakpoint)
 * the panel covers the chat when open, so it starts folded there. */

import { root, state } from "./state.js";

const OPEN_KEY = "supportdesk.visitor-panel-open";
const NARROW = window.matchMedia("(max-width: 760px)");

const remembered = () => {
  try {
    return window.localStorage.getItem(OPEN_KEY);
  } catch {
    return null;
  }
};

let open = NARROW.matches ? false : remembered() !== "0";

const show = (button) => button.setAttribute("aria-expanded", open ? "true" : "false");

const apply = () => {
  root.classList.toggle("is-visitor-panel-closed", !open);
  state.chats.forEach((chat) => show(chat.pane.details));
};

export const setVisitorSidebarOpen = (wanted) => {
  open = wanted;
  // A phone's fold is for the moment only: the desk's choice is the wide screen's.
  if (!NARROW.matches) {
    try {
      window.localStorage.setItem(OPEN_KEY, open ? "1" : "0");
    } catch {
      /* private mode: this page remembers it */
    }
  }
  apply();
};

/* The pane's button, named by the panel it shows or hides. */
export const attachVisitorSidebar = (chat) => {
  const { details, visitorAside } = chat.pane;
  visitorAside.id = `visitor-panel-${chat.id}`;
  const title = visitorAside.querySelector(".visitor-panel-title");
  title.id = `visitor-panel-title-${chat.id}`;
  visitorAside.setAttribute("aria-labelledby", title.id);
  details.setAttribute("aria-controls", visitorAside.id);
  show(details);
  details.addEventListener("click", () => setVisitorSidebarOpen(!open));
};

export const setupVisitorSidebar = () => apply();
