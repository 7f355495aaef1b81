/* Expanding `/shortcut` in a reply: while the agent types `/word` the matching canned
 * responses are offered in a list under the composer (arrows move, Enter or Tab picks,
 * Escape closes), and a shortcut typed out in full expands on Space, Tab or Enter. */

import { canned, setCannedResponses } from "./canned.js";
import { onComposerInput } from "./composer.js";
import { announce, t } from "./dom.js";
import { state } from "./state.js";

const MAX_SUGGESTIONS = 8;

/* The `/word` that ends at the caret, at the start of the text or after whitespace
   (so URLs and paths are left alone); null if there is none. */
const shortcutAtCaret = (input) => {
  if (input.selectionStart !== input.selectionEnd) return null;
  const caret = input.selectionStart;
  const match = /(^|\s)\/([A-Za-z0-9_-]*)$/.exec(input.value.slice(0, caret));
  if (!match) return null;
  return { start: caret - match[2].length - 1, end: caret, word: match[2].toLowerCase() };
};

const matchingResponses = (word) => {
  const exact = canned.byShortcut.get(word);
  const rest = canned.responses.filter(
    (response) => response !== exact && response.shortcut.startsWith(word),
  );
  return (exact ? [exact] : []).concat(rest).slice(0, MAX_SUGGESTIONS);
};

const hideSuggestions = (chat) => {
  chat.pane.suggest.hidden = true;
  chat.pane.suggest.textContent = "";
  chat.suggestions = [];
  chat.suggestActive = null;
  chat.pane.input.removeAttribute("aria-activedescendant");
};

const insertCanned = (chat, token, response) => {
  chat.pane.input.setRangeText(response.body, token.start, token.end, "end");
  hideSuggestions(chat);
  // As if typed: the typing indicator, and a list that may now close.
  onComposerInput(chat);
  announce(t("inserted_shortcut", { shortcut: response.shortcut }));
};

const highlightSuggestion = (chat) => {
  const options = chat.pane.suggest.children;
  const active = chat.suggestions.indexOf(chat.suggestActive);
  [...options].forEach((option, i) => {
    option.setAttribute("aria-selected", i === active ? "true" : "false");
  });
  if (options[active]) {
    chat.pane.input.setAttribute("aria-activedescendant", options[active].id);
    options[active].scrollIntoView({ block: "nearest" });
  }
};

const suggestionOption = (chat, response, id) => {
  const option = document.createElement("li");
  option.id = id;
  option.className = "canned-option";
  option.setAttribute("role", "option");
  const name = document.createElement("span");
  name.className = "canned-option-shortcut";
  name.textContent = `/${response.shortcut}`;
  const preview = document.createElement("span");
  preview.className = "canned-option-body";
  preview.textContent = response.body;
  option.appendChild(name);
  option.appendChild(preview);
  // mousedown would take the focus from the composer first.
  option.addEventListener("mousedown", (event) => event.preventDefault());
  option.addEventListener("click", () => {
    const at = shortcutAtCaret(chat.pane.input);
    if (at) insertCanned(chat, at, response);
  });
  return option;
};

const updateSuggestions = (chat) => {
  const token = chat.status === "active" ? shortcutAtCaret(chat.pane.input) : null;
  const matches = token ? matchingResponses(token.word) : [];
  if (!matches.length) {
    hideSuggestions(chat);
    return;
  }
  const suggest = chat.pane.suggest;
  const keep = chat.suggestActive && matches.includes(chat.suggestActive);
  chat.suggestActive = keep ? chat.suggestActive : matches[0];
  chat.suggestions = matches;
  suggest.textContent = "";
  matches.forEach((response, i) => {
    suggest.appendChild(suggestionOption(chat, response, `${suggest.id}-${i}`));
  });
  suggest.hidden = false;
  highlightSuggestion(chat);
};

/* `canned`: the dialog shows the new list, and lists open under composers follow it. */
export const onCanned = (frame) => {
  setCannedResponses(frame);
  state.chats.forEach((chat) => {
    if (!chat.pane.suggest.hidden) updateSuggestions(chat);
  });
};

/* Keys for the list and for expanding; true when the key was used up here. */
const cannedKeydown = (chat, event) => {
  if (event.isComposing || event.altKey || event.ctrlKey || event.metaKey) return false;
  const open = !chat.pane.suggest.hidden && chat.suggestions.length > 0;
  if (open && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
    const step = event.key === "ArrowDown" ? 1 : -1;
    const count = chat.suggestions.length;
    const at = chat.suggestions.indexOf(chat.suggestActive);
    chat.suggestActive = chat.suggestions[(at + step + count) % count];
    highlightSuggestion(chat);
    return true;
  }
  if (open && event.key === "Escape") {
    hideSuggestions(chat);
    return true;
  }
  const picking = (event.key === "Enter" && !event.shiftKey) || event.key === "Tab";
  if (open && picking && !event.shiftKey && chat.suggestActive) {
    const token = shortcutAtCaret(chat.pane.input);
    if (token) {
      insertCanned(chat, token, chat.suggestActive);
      return true;
    }
  }
  // Typed out in full: Space, Tab or Enter expands a known shortcut. An unknown one
  // stays as typed (and Enter sends it, Tab moves on, as without this feature).
  if ((picking && !event.shiftKey) || event.key === " ") {
    const typed = shortcutAtCaret(chat.pane.input);
    const response = typed && canned.byShortcut.get(typed.word);
    if (response) {
      insertCanned(chat, typed, response);
      return true;
    }
  }
  return false;
};

export const attachCanned = (chat) => {
  const { input, suggest } = chat.pane;
  suggest.id = `canned-suggest-${chat.id}`;
  chat.suggestions = [];
  chat.suggestActive = null;
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", suggest.id);
  // Registered before the composer's own keydown (Enter sends), which it pre-empts.
  input.addEventListener("keydown", (event) => {
    if (cannedKeydown(chat, event)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  });
  input.addEventListener("input", () => updateSuggestions(chat));
  input.addEventListener("click", () => updateSuggestions(chat));
  input.addEventListener("blur", () => hideSuggestions(chat));
};
