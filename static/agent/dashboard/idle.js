/* How long the agent has not touched the dashboard, for auto-away: the last input (key,
 * pointer, focus) in any tab of this browser, shared through localStorage so a background
 * tab does not report its agent idle. The server decides what idle means
 * (SUPPORTDESK_AUTO_AWAY_SECONDS) from each ping's idle_seconds (socket.js). */

const LAST_INPUT_KEY = "supportdesk.agent-last-input";

let lastInput = Date.now();

const sharedLastInput = () => {
  try {
    return Math.max(lastInput, Number(window.localStorage.getItem(LAST_INPUT_KEY)) || 0);
  } catch {
    return lastInput;
  }
};

export const idleSeconds = () =>
  Math.max(0, Math.round((Date.now() - sharedLastInput()) / 1000));

/* Notes an input now; false (and nothing stored) within a second of the last one. */
export const recordInput = () => {
  const now = Date.now();
  if (now - lastInput < 1000) return false;
  lastInput = now;
  try {
    window.localStorage.setItem(LAST_INPUT_KEY, String(now));
  } catch {
    /* storage blocked: this tab's own input still counts */
  }
  return true;
};
