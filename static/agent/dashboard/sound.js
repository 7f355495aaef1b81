/* A short chime for a new chat or message while the agent looks elsewhere, made with
 * Web Audio (two soft notes: nothing to download). Browsers let a page's audio start
 * only after the person interacted with it, so the audio context is made (or resumed)
 * on the agent's first click or key; the sidebar's Sound button turns it off and on,
 * remembered in this browser. */

import { els, t, text } from "./dom.js";

const SOUND_KEY = "supportdesk.sound";
const NOTES = [
  [880, 0], // A5, then
  [1318.5, 0.12], // E6, 120 ms later
];
const NOTE_SECONDS = 0.18;

let context = null;
let enabled = true;

const readEnabled = () => {
  try {
    return window.localStorage.getItem(SOUND_KEY) !== "off";
  } catch {
    return true;
  }
};

const showButton = () => {
  els.sound.setAttribute("aria-pressed", enabled ? "true" : "false");
  text(els.soundState, t(enabled ? "sound_on" : "sound_off"));
};

/* Made or woken by a user gesture: only then may it play later, from a frame. */
const unlock = () => {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  try {
    if (!context) context = new Context();
    if (context.state === "suspended") context.resume();
  } catch {
    context = null;
  }
};

export const chime = () => {
  if (!enabled || !context || context.state !== "running") return;
  const start = context.currentTime;
  NOTES.forEach(([frequency, offset]) => {
    const oscillator = context.createOscillator();
    const gain = context.createGain();
    oscillator.type = "sine";
    oscillator.frequency.value = frequency;
    // A quick fade in and out: a click-free "ding", quiet beside other apps.
    gain.gain.setValueAtTime(0.0001, start + offset);
    gain.gain.exponentialRampToValueAtTime(0.15, start + offset + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + NOTE_SECONDS);
    oscillator.connect(gain).connect(context.destination);
    oscillator.start(start + offset);
    oscillator.stop(start + offset + NOTE_SECONDS);
  });
};

export const setupSound = () => {
  enabled = readEnabled();
  showButton();
  window.addEventListener("pointerdown", unlock, { capture: true });
  window.addEventListener("keydown", unlock, { capture: true });
  els.sound.addEventListener("click", () => {
    enabled = !enabled;
    try {
      window.localStorage.setItem(SOUND_KEY, enabled ? "on" : "off");
    } catch {
      /* private mode: for this page only */
    }
    showButton();
    if (enabled) chime(); // what it sounds like
  });
};
