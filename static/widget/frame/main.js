/* supportdesk widget frame: one visitor's chat over /ws/visitor/ (see docs/protocol.md).
 * This entry module says what each frame and page event does; frame.html preloads every
 * module it imports, directly or not.
 *
 * Promises kept here: nothing missed, nothing doubled (messages keyed by conversation and
 * seq, own messages by client_msg_id; resume with the gapless last_seq); messages typed
 * offline wait in a localStorage outbox and go out on reconnect with the same
 * client_msg_id; text reaches the DOM only through textContent/createTextNode, and links
 * are <a> elements made for http(s) URLs only. */
import { cfg, flashBanner, outbox, parentOrigin, scrollDown, setBanner, state, toParent, ui } from './shared.js';
import { notePage, sendFrame, startSocket } from './socket.js';
import { addEndedNote, addJoined, addMessage, header, hideTyping, markRead, resetView, setConversation, showTyping, staleQueueFrame, updateUnread } from './conversation.js';
import { addPending, autosize, fail, flushOutbox, holdPending, receipts, stopTyping, submit, typingInput, typingLost, uploadFile } from './composer.js';
import { conversationRated, showAvailability, transcriptRefused, transcriptSent } from './forms.js';

const rootStyle = document.documentElement.style;
rootStyle.setProperty('--sd-accent', cfg.color);
rootStyle.setProperty('--sd-ink', cfg.ink);

// Standalone (opened directly) the chat is always on screen; embedded, the loader says.
state.shown = !parentOrigin;
ui.close.hidden = !parentOrigin;

// --- what each server frame does -----------------------------------------------------
const handlers = {
  // Only a `ready` for our conversation gets here (socket.js resyncs otherwise).
  ready(f) {
    const c = f.conversation;
    setBanner(null);
    if (typeof f.sneak_peek === 'boolean') state.sneakPeek = f.sneak_peek;
    ui.privacy.hidden = !state.sneakPeek;
    if (typeof f.agents_online === 'boolean') state.agentsOnline = f.agents_online;
    if (f.visitor && f.visitor.email) state.visitorEmail = f.visitor.email;
    setConversation(c);
    if (c && c.id === state.latest) state.agentRead = Math.max(state.agentRead, c.agent_read_seq || 0);
    if (c && c.status === 'active') addJoined(c.id, state.conv.agent, 1);
    for (const m of f.messages || []) addMessage(m);
    if (c && c.rating) state.rated.add(c.id);
    if (c && c.status === 'closed') addEndedNote(c.id, null);
    showAvailability();
    flushOutbox();
    receipts();
    markRead();
    scrollDown(true);
  },
  message(f) {
    if (!addMessage(f)) return;
    receipts();
    scrollDown(f.sender === 'visitor');
    markRead();
    updateUnread();
  },
  'message.ack'(f) {
    const o = state.own.get(f.client_msg_id);
    if (!o) return;
    addMessage({
      conversation: f.conversation,
      seq: f.seq,
      sender: 'visitor',
      body: o.body,
      attachment: o.attachment,
      client_msg_id: f.client_msg_id,
    });
    receipts();
  },
  'conversation.queued'(f) {
    if (staleQueueFrame(f.conversation, f.queue_version)) return;
    setConversation({
      id: f.conversation,
      status: 'queued',
      queue_position: f.position,
      estimated_wait_seconds: f.estimated_wait_seconds,
    });
  },
  'conversation.assigned'(f) {
    staleQueueFrame(f.conversation.id, f.queue_version);
    setConversation({ ...f.conversation, agent: f.agent || f.conversation.agent });
    const { conv } = state;
    if (conv && conv.id === f.conversation.id) addJoined(conv.id, conv.agent, state.topSeq);
    scrollDown(false);
  },
  'conversation.closed'(f) {
    if (state.conv && state.conv.id === f.conversation) state.conv.status = 'closed';
    header();
    hideTyping();
    addEndedNote(f.conversation, f.by);
    scrollDown(false);
  },
  'agents.online'(f) {
    state.agentsOnline = f.online === true;
    header();
    showAvailability();
  },
  'transcript.sent': transcriptSent,
  'conversation.rated': conversationRated,
  typing(f) {
    if (f.from !== 'agent' || !state.conv || f.conversation !== state.conv.id) return;
    if (f.active) showTyping();
    else hideTyping();
  },
  read(f) {
    if (f.by !== 'agent' || f.conversation !== state.latest) return;
    state.agentRead = Math.max(state.agentRead, f.seq);
    receipts();
  },
  error(f) {
    if (transcriptRefused(f)) return;
    if (f.client_msg_id && state.own.has(f.client_msg_id)) {
      // Busy or briefly unavailable: worth retrying. Anything else would fail again.
      const transient = f.code === 'rate_limited' || f.code === 'unavailable';
      fail(f.client_msg_id, f.detail, !transient);
    } else if (f.code === 'not_found' || f.code === 'conversation_closed') {
      // No open conversation any more (typing/read/close after it ended).
      if (state.conv && state.conv.status !== 'closed') {
        state.conv.status = 'closed';
        header();
      }
    } else if (f.code === 'rate_limited') {
      flashBanner('You are sending messages too fast. Please wait a moment.');
    } else {
      flashBanner(f.detail || 'Something went wrong.');
    }
  },
};

// --- the loader and the visitor ------------------------------------------------------
document.addEventListener('visibilitychange', markRead);
window.addEventListener('message', (event) => {
  if (!parentOrigin || event.origin !== parentOrigin || event.source !== window.parent) return;
  notePage(event.data && event.data.page);
  const kind = event.data && event.data.supportdesk;
  if (kind === 'open') {
    state.shown = true;
    if (event.data.focus) ui.input.focus();
    scrollDown(true);
    markRead();
  } else if (kind === 'close') {
    state.shown = false;
  }
});

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  submit();
});
ui.input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});
ui.input.addEventListener('input', () => {
  autosize();
  typingInput();
});
ui.input.addEventListener('blur', stopTyping);
ui.close.addEventListener('click', () => toParent({ supportdesk: 'close' }));
ui.end.addEventListener('click', () => sendFrame({ type: 'conversation.close' }));
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape') toParent({ supportdesk: 'close' });
});

header();
for (const m of outbox) addPending(m.id, m.body, m.attachment);
ui.file.accept = cfg.attachment_accept || '';
ui.attach.addEventListener('click', () => ui.file.click());
ui.file.addEventListener('change', () => {
  const file = ui.file.files[0];
  ui.file.value = '';
  uploadFile(file);
});
receipts();
ui.input.disabled = ui.send.disabled = ui.attach.disabled = false;
toParent({ supportdesk: 'ready' });
startSocket({
  handlers,
  lost() {
    hideTyping();
    typingLost();
    holdPending();
    receipts();
  },
  forgotten: resetView,
});
