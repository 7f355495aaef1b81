/* Agent assist (docs/bot.md "Agent assist"): for the visitor's latest message the
 * server suggests up to three replies (a knowledge-base article, a canned response, the
 * agent's own past answer), shown above the composer; Alt+1, Alt+2, Alt+3 (or a click)
 * insert one at the caret, to be read and edited before sending. Beside the chat's
 * heading a tag names the visitor's language ("DE", its name in the tooltip); in the
 * chat list a red mark flags an upset visitor (English only) and moves the chat to the
 * top of the open chats. Asked for with `assist.suggest` on each visitor message. */

import { onComposerInput } from "./composer.js";
import { announce, LANG, t, text } from "./dom.js";
import { send } from "./socket.js";
import { state } from "./state.js";

// Every piece of text this module shows, in one place: keys of chat/dashboard_text.py.
const STRINGS = {
  group: () => t("assist_group"),
  key: (n) => `Alt+${n}`, // the key's name, as the keyboard says it
  source: (source) => {
    const key = { article: "assist_article", canned: "assist_canned", past_answer: "assist_past" }[source];
    return key ? t(key) : source;
  },
  language: (name) => t("assist_language", { name }),
  upset: () => t("assist_upset"),
  upsetTitle: () => t("assist_upset_title"),
  inserted: (n) => t("assist_inserted", { n }),
};

const MAX_SHOWN = 3;

/* Ask for suggestions for the chat's latest visitor message. */
export const requestAssist = (chat) => {
  if (chat.status !== "active") return;
  if (send({ type: "assist.suggest", conversation: chat.id })) chat.assistAskedAt = Date.now();
};

/* After (re)connecting: messages that came in while the socket was away arrive by
   `sync`, not as `message` frames, so every open chat asks again, except those whose
   pane `ready` has just built (they asked already). */
export const refreshAssist = () => {
  const now = Date.now();
  state.chats.forEach((chat) => {
    if (now - (chat.assistAskedAt || 0) > 1000) requestAssist(chat);
  });
};

const insertSuggestion = (chat, n) => {
  const suggestion = (chat.assist && chat.assist.suggestions[n - 1]) || null;
  if (!suggestion) return false;
  const input = chat.pane.input;
  input.setRangeText(suggestion.text, input.selectionStart, input.selectionEnd, "end");
  input.focus();
  // As if typed: the typing indicator goes out.
  onComposerInput(chat);
  announce(STRINGS.inserted(n));
  return true;
};

const suggestionButton = (chat, suggestion, n) => {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "assist-suggestion";
  button.setAttribute("aria-keyshortcuts", STRINGS.key(n));
  const key = document.createElement("kbd");
  key.textContent = STRINGS.key(n);
  const source = document.createElement("span");
  source.className = "assist-source";
  source.textContent = STRINGS.source(suggestion.source);
  const body = document.createElement("span");
  body.className = "assist-text";
  body.textContent = suggestion.text.replace(/\s+/g, " ");
  button.title = suggestion.title || "";
  button.append(key, source, body);
  // mousedown would take the focus from the composer first.
  button.addEventListener("mousedown", (event) => event.preventDefault());
  button.addEventListener("click", () => insertSuggestion(chat, n));
  return button;
};

const showSuggestions = (chat) => {
  const box = chat.assistBox;
  box.textContent = "";
  const suggestions = (chat.assist ? chat.assist.suggestions : []).slice(0, MAX_SHOWN);
  suggestions.forEach((suggestion, i) => box.appendChild(suggestionButton(chat, suggestion, i + 1)));
  box.hidden = suggestions.length === 0;
};

/* The visitor's language named in the agent's ("Deutsch", "ألمانية"); the server's
   English name where the browser has none for the code. */
const languageName = (language) => {
  try {
    return new Intl.DisplayNames([LANG], { type: "language" }).of(language.code) || language.name;
  } catch {
    return language.name;
  }
};

const showLanguage = (chat, language) => {
  const tag = chat.assistLanguage;
  tag.hidden = !language;
  if (!language) return;
  text(tag, language.code.toUpperCase());
  tag.title = STRINGS.language(languageName(language));
};

const showMood = (chat, sentiment) => {
  const upset = Boolean(sentiment && sentiment.negative);
  chat.assistMood.hidden = !upset;
  chat.item.entry.classList.toggle("is-upset", upset);
  // An upset visitor is seen first: the chat goes to the top of the open chats.
  const entry = chat.item.entry;
  if (upset && entry.parentElement && entry.parentElement.firstElementChild !== entry) {
    entry.parentElement.prepend(entry);
  }
};

/* A visitor's new message: ask again, for it. */
export const onVisitorMessage = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (chat && frame.sender === "visitor") requestAssist(chat);
};

export const onAssistSuggestions = (frame) => {
  const chat = state.chats.get(frame.conversation);
  if (!chat || !chat.assistBox) return;
  // Answers may cross: keep the one for the newest visitor message.
  if (chat.assist && frame.seq !== null && chat.assist.seq > frame.seq) return;
  chat.assist = frame;
  showSuggestions(chat);
  showLanguage(chat, frame.language);
  showMood(chat, frame.sentiment);
};

/* The chat's suggestion row above the composer, its language tag and its list mark. */
export const attachAssist = (chat) => {
  const box = document.createElement("div");
  box.className = "assist-suggestions";
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", STRINGS.group());
  box.hidden = true;
  chat.pane.label.before(box);
  chat.assistBox = box;

  const tag = document.createElement("abbr");
  tag.className = "assist-language";
  tag.hidden = true;
  chat.pane.sub.before(tag);
  chat.assistLanguage = tag;

  const mood = document.createElement("span");
  mood.className = "item-mood";
  mood.title = STRINGS.upsetTitle();
  mood.hidden = true;
  const dot = document.createElement("span");
  dot.setAttribute("aria-hidden", "true");
  dot.textContent = "●";
  const said = document.createElement("span");
  said.className = "sr-only";
  said.textContent = STRINGS.upset();
  mood.append(dot, said);
  chat.item.name.after(mood);
  chat.assistMood = mood;

  chat.pane.input.addEventListener("keydown", (event) => {
    // event.code, not event.key: Alt+1 types "¡" on a Mac keyboard.
    const match = /^Digit([1-3])$/.exec(event.code);
    if (!match || !event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    if (insertSuggestion(chat, Number(match[1]))) event.preventDefault();
  });
  requestAssist(chat);
};
