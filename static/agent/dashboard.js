/* supportdesk agent dashboard.
 *
 * One WebSocket to /ws/agent/ (same origin, session cookie), the wire contract of
 * docs/protocol.md, plain DOM. Every piece of text from the network goes into the page
 * through textContent; the only elements made from message text are <a> for http(s)
 * URLs, whose href is checked with the URL parser first.
 *
 * Messages are kept per chat by seq: a seq already held is never drawn twice, and a
 * hole in the seqs is filled with `sync`, so a dropped socket or a missed broadcast
 * costs nothing but a round trip.
 */
(function () {
  "use strict";

  var PING_EVERY_MS = 25000;
  var PONG_TIMEOUT_MS = 10000; // no pong by then: the socket is dead, reconnect
  var ACK_TIMEOUT_MS = 10000;
  var TYPING_REPEAT_MS = 3000; // resend typing:true at most this often while typing
  var TYPING_IDLE_MS = 4000; // typing:false after this long without a keystroke
  var VISITOR_TYPING_TTL_MS = 8000; // hide the visitor's indicator if they go quiet
  var WAIT_TICK_MS = 5000;
  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 30000;
  var TITLE = "supportdesk";
  var NOTIFY_ASKED_KEY = "supportdesk.notifications-asked";

  var root = document.getElementById("inbox");
  if (!root) return;

  var els = {
    list: document.getElementById("chat-list"),
    listEmpty: document.getElementById("list-empty"),
    panes: document.getElementById("panes"),
    emptyPane: document.getElementById("empty-pane"),
    banner: document.getElementById("offline-banner"),
    queue: document.getElementById("queue-length"),
    load: document.getElementById("load"),
    capacity: document.getElementById("capacity"),
    agentName: document.getElementById("agent-name"),
    agentInitial: document.getElementById("agent-initial"),
    connection: document.getElementById("connection"),
    connectionText: document.getElementById("connection-text"),
    presence: document.getElementById("presence"),
    presenceNote: document.getElementById("presence-note"),
    notify: document.getElementById("notify"),
    toast: document.getElementById("toast"),
    announcer: document.getElementById("announcer"),
    itemTemplate: document.getElementById("chat-item-template"),
    paneTemplate: document.getElementById("pane-template"),
  };

  var state = {
    status: root.dataset.status || "away",
    presenceWanted: null,
    capacity: Number(root.dataset.capacity) || 0,
    queueLength: null,
    chats: new Map(), // conversation id -> chat
    selected: null, // conversation id
    socket: null,
    connected: false, // `ready` received on the current socket
    attempt: 0,
    reconnectTimer: null,
    pingTimer: null,
    pongTimer: null,
    signedOut: false,
    toastTimer: null,
  };

  // --- small helpers ------------------------------------------------------------

  function text(el, value) {
    el.textContent = value;
    return el;
  }

  function part(parent, selector) {
    return parent.querySelector(selector);
  }

  function newClientMsgId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    // randomUUID needs a secure context; getRandomValues does not.
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return b.toString(16).padStart(2, "0");
      })
      .join("");
  }

  function clockTime(iso) {
    var date = iso ? new Date(iso) : new Date();
    if (isNaN(date.getTime())) return "";
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function duration(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m";
    var h = Math.floor(m / 60);
    return h + "h " + (m % 60) + "m";
  }

  function pageAttentive() {
    return document.visibilityState === "visible" && document.hasFocus();
  }

  var URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  var TRAILING_PUNCTUATION = /[.,;:!?)\]}'"]+$/;

  /* Fill `parent` with `body` as text nodes, turning http(s) URLs into links.
     Anything else (javascript:, data:, markup) stays literal text. */
  function renderBody(parent, body) {
    var last = 0;
    var match;
    URL_PATTERN.lastIndex = 0;
    while ((match = URL_PATTERN.exec(body)) !== null) {
      var raw = match[0].replace(TRAILING_PUNCTUATION, "");
      var href = safeHref(raw);
      if (!href) continue;
      if (match.index > last) {
        parent.appendChild(document.createTextNode(body.slice(last, match.index)));
      }
      var a = document.createElement("a");
      a.href = href;
      a.target = "_blank";
      a.rel = "noopener noreferrer nofollow";
      a.textContent = raw;
      parent.appendChild(a);
      last = match.index + raw.length;
      URL_PATTERN.lastIndex = last;
    }
    if (last < body.length) parent.appendChild(document.createTextNode(body.slice(last)));
  }

  function safeHref(raw) {
    try {
      var url = new URL(raw);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (err) {
      return null;
    }
  }

  function announce(message) {
    // Re-setting the same text would not be announced again; clear first.
    els.announcer.textContent = "";
    window.setTimeout(function () {
      els.announcer.textContent = message;
    }, 50);
  }

  function toast(message) {
    text(els.toast, message);
    els.toast.hidden = false;
    window.clearTimeout(state.toastTimer);
    state.toastTimer = window.setTimeout(function () {
      els.toast.hidden = true;
    }, 6000);
  }

  // --- the socket ---------------------------------------------------------------

  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + (root.dataset.socketPath || "/ws/agent/");
  }

  function connect() {
    window.clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    showConnection("connecting", state.attempt ? "Reconnecting…" : "Connecting…");
    var socket;
    try {
      socket = new WebSocket(socketUrl());
    } catch (err) {
      scheduleReconnect();
      return;
    }
    state.socket = socket;
    socket.addEventListener("message", function (event) {
      if (socket !== state.socket) return;
      // Anything from the server proves the socket alive.
      window.clearTimeout(state.pongTimer);
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (frame && typeof frame.type === "string") handleFrame(frame);
    });
    socket.addEventListener("close", function (event) {
      if (socket !== state.socket) return;
      onSocketClosed(event.code);
    });
  }

  function send(frame) {
    var socket = state.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN || !state.connected) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  /* Give up on the current socket now (network gone, or no pong): a half-open TCP
     connection can look open for minutes. Its late close event is ignored. */
  function dropSocket() {
    var socket = state.socket;
    if (!socket) return;
    state.socket = null;
    try {
      socket.close();
    } catch (err) {
      /* already closing */
    }
    onSocketClosed(1006);
  }

  function ping() {
    if (!send({ type: "ping" })) return;
    window.clearTimeout(state.pongTimer);
    state.pongTimer = window.setTimeout(dropSocket, PONG_TIMEOUT_MS);
  }

  function onSocketClosed(code) {
    state.socket = null;
    state.connected = false;
    window.clearInterval(state.pingTimer);
    window.clearTimeout(state.pongTimer);
    state.chats.forEach(function (chat) {
      chat.syncing = false;
      chat.pending.forEach(function (pending) {
        window.clearTimeout(pending.timer);
        // Unacknowledged sends go again after `ready`, with the same client_msg_id.
        if (pending.state === "sending") setPendingState(chat, pending, "sending");
      });
    });
    updatePresenceControls();
    if (code === 4401) {
      state.signedOut = true;
      showConnection("offline", "Signed out");
      showBanner("Your session ended. Sign in again to keep chatting.", true);
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    // Exponential backoff with jitter, so a restarted server is not hit by every
    // dashboard at the same instant.
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, state.attempt));
    var delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    state.attempt += 1;
    var seconds = Math.max(1, Math.round(delay / 1000));
    if (navigator.onLine === false) {
      showConnection("offline", "Offline");
      showBanner(
        "You are offline. Replies you write now are sent when the network is back.",
        false,
      );
    } else {
      showConnection("offline", "Reconnecting…");
      showBanner(
        "Connection lost. Trying again in " +
          seconds +
          "s. Replies you write now are sent when it is back.",
        false,
      );
    }
    state.reconnectTimer = window.setTimeout(connect, delay);
  }

  function showConnection(kind, label) {
    els.connection.dataset.state = kind;
    text(els.connectionText, label);
  }

  function showBanner(message, withLogin) {
    els.banner.textContent = message;
    if (withLogin) {
      var link = document.createElement("a");
      link.href = "/accounts/login/?next=/agent/";
      link.textContent = "Sign in";
      els.banner.appendChild(document.createTextNode(" "));
      els.banner.appendChild(link);
    }
    els.banner.hidden = false;
  }

  function retryNow() {
    if (state.socket || state.signedOut) return;
    state.attempt = 0;
    connect();
  }

  window.addEventListener("online", retryNow);
  window.addEventListener("offline", dropSocket);

  // --- frames -------------------------------------------------------------------

  var handlers = {
    ready: onReady,
    presence: onPresence,
    queue: function (frame) {
      setQueueLength(frame.queue_length);
    },
    "conversation.assigned": onAssigned,
    message: onMessage,
    "message.ack": onAck,
    note: function (frame) {
      var chat = state.chats.get(frame.conversation);
      if (chat) addNotes(chat, [frame]);
    },
    "note.ack": function () {},
    agents: onAgents,
    "conversation.rated": function (frame) {
      var chat = state.chats.get(frame.conversation);
      if (!chat || chat.status === "active") return;
      var said = frame.comment ? ": “" + frame.comment + "”" : ".";
      text(chat.pane.notice, chat.pane.notice.textContent + " The visitor rated it " + frame.score + "/5" + said);
    },
    "conversation.transferred": onTransferred,
    sync: onSync,
    typing: onTyping,
    read: onRead,
    "conversation.closed": onClosed,
    "conversation.requeued": onRequeued,
    error: onError,
    pong: function () {},
  };

  function handleFrame(frame) {
    var handler = handlers[frame.type];
    if (handler) handler(frame);
  }

  function onReady(frame) {
    state.connected = true;
    state.attempt = 0;
    showConnection("online", "Connected");
    els.banner.hidden = true;
    window.clearInterval(state.pingTimer);
    state.pingTimer = window.setInterval(ping, PING_EVERY_MS);

    var agent = frame.agent || {};
    if (agent.display_name) {
      text(els.agentName, agent.display_name);
      text(els.agentInitial, agent.display_name.slice(0, 1).toUpperCase());
    }
    if (typeof agent.capacity === "number") state.capacity = agent.capacity;
    if (agent.status) state.status = agent.status;
    state.presenceWanted = null;
    updatePresenceControls();
    setQueueLength(frame.queue_length);

    var listed = new Set();
    (frame.conversations || []).forEach(function (data) {
      listed.add(data.id);
      var chat = state.chats.get(data.id);
      var isNew = !chat;
      chat = upsertChat(data);
      // The server's count is the truth after a reconnect; sync only adds messages.
      chat.unread = Number(data.unread) || 0;
      chat.countedThrough = Number(data.last_seq) || 0;
      if (isNew) chat.readSeq = Number(data.read_seq) || 0;
      if (chat.status === "active") {
        // A close that was cut off by the reconnect did not happen.
        chat.pane.close.disabled = false;
        text(chat.pane.close, "Close chat");
      }
      requestSync(chat, contiguousSeq(chat));
      resendPending(chat);
      updateItem(chat);
    });
    state.chats.forEach(function (chat) {
      if (!listed.has(chat.id) && chat.status === "active") {
        endChat(
          chat,
          "ended",
          "This chat is no longer yours: it was closed or moved back to the queue while you were offline.",
        );
      }
    });
    refreshCounts();
  }

  function onPresence(frame) {
    state.status = frame.status;
    if (state.presenceWanted === frame.status) state.presenceWanted = null;
    updatePresenceControls();
  }

  function onAssigned(frame) {
    var data = frame.conversation || {};
    if (typeof data.id !== "number") return;
    var known = state.chats.get(data.id);
    var reopened = known && known.status !== "active";
    var chat = upsertChat(data);
    if (!known || reopened) {
      chat.unread = Number(data.unread) || 0;
      chat.countedThrough = Number(data.last_seq) || 0;
      chat.readSeq = Number(data.read_seq) || 0;
    }
    if (Array.isArray(data.messages)) {
      addMessages(chat, data.messages, false);
      addNotes(chat, data.notes);
      chat.historyLoaded = true;
      checkGaps(chat);
    } else {
      requestSync(chat, contiguousSeq(chat));
    }
    updateItem(chat);
    refreshCounts();
    if (!known || reopened) {
      var who = visitorName(chat);
      announce("New chat from " + who + ".");
      notifyDesktop("New chat from " + who, lastPreview(chat), chat);
    }
    markRead(chat);
  }

  function onMessage(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    var added = addMessages(chat, [frame], true);
    if (!added) return;
    if (frame.sender === "visitor") {
      setVisitorTyping(chat, false);
      var watching = state.selected === chat.id && pageAttentive();
      // The socket joins its groups before the server counts `unread` for `ready`, so
      // a message may be in that count and arrive as a frame too: count it once.
      var counted = frame.seq <= chat.countedThrough;
      chat.countedThrough = Math.max(chat.countedThrough, frame.seq);
      if (!watching && !counted) {
        chat.unread += 1;
        if (state.selected !== chat.id) {
          announce("New message from " + visitorName(chat) + ": " + frame.body.slice(0, 140));
        }
        notifyDesktop(visitorName(chat), frame.body, chat);
      }
    }
    checkGaps(chat);
    updateItem(chat);
    refreshCounts();
    markRead(chat);
  }

  function onAck(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    var pending = chat.pending.get(frame.client_msg_id);
    if (!pending) return; // a duplicate ack for a retry already confirmed
    settlePending(chat, pending);
    addMessages(
      chat,
      [
        {
          conversation: chat.id,
          seq: frame.seq,
          sender: "agent",
          body: pending.body,
          client_msg_id: pending.id,
          sent_at: new Date().toISOString(),
        },
      ],
      true,
    );
    // Answering means having read everything before the answer (the server agrees).
    chat.readSeq = Math.max(chat.readSeq, frame.seq);
    chat.unread = 0;
    checkGaps(chat);
    updateItem(chat);
    refreshCounts();
  }

  function onSync(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    chat.syncing = false;
    addMessages(chat, frame.messages || [], false);
    addNotes(chat, frame.notes);
    chat.historyLoaded = true;
    checkGaps(chat);
    updateItem(chat);
    refreshCounts();
    markRead(chat);
  }

  function onTyping(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat || frame.from !== "visitor") return;
    setVisitorTyping(chat, frame.active === true);
  }

  function onRead(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat || typeof frame.seq !== "number") return;
    if (frame.by === "visitor") {
      if (frame.seq > chat.visitorReadSeq) {
        chat.visitorReadSeq = frame.seq;
        updateReceipt(chat);
      }
    } else if (frame.by === "agent") {
      // Read in another tab of mine.
      if (frame.seq > chat.readSeq) {
        chat.readSeq = frame.seq;
        chat.unread = countVisitorMessagesAfter(chat, frame.seq);
        updateItem(chat);
        refreshCounts();
      }
    }
  }

  function onClosed(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    var by =
      frame.by === "agent" ? "you" : frame.by === "visitor" ? "the visitor" : "the system";
    endChat(chat, "closed", "This chat was closed by " + by + ".");
    if (frame.by !== "agent") announce("Chat with " + visitorName(chat) + " was closed by " + by + ".");
  }

  /* Fills every open transfer panel with the colleagues who could take a chat. */
  function onAgents(frame) {
    state.chats.forEach(function (chat) {
      if (chat.pane.transferPanel.hidden) return;
      var select = chat.pane.transferSelect;
      select.textContent = "";
      var queue = document.createElement("option");
      queue.value = "";
      text(queue, "Back to the queue");
      select.appendChild(queue);
      (frame.agents || []).forEach(function (agent) {
        var option = document.createElement("option");
        option.value = String(agent.id);
        var free = agent.online && agent.status === "available" && agent.load < agent.capacity;
        var why = !agent.online ? "offline" : agent.status !== "available" ? "away" : free ? "available" : "full";
        text(option, agent.display_name + " (" + why + ", " + agent.load + "/" + agent.capacity + ")");
        option.disabled = !free;
        select.appendChild(option);
      });
      var firstFree = select.querySelector("option:not([value='']):not(:disabled)");
      if (firstFree) select.value = firstFree.value;
      chat.pane.transferSubmit.disabled = false;
    });
  }

  function showTransferPanel(chat, open) {
    chat.pane.transferPanel.hidden = !open;
    chat.pane.transfer.setAttribute("aria-expanded", open ? "true" : "false");
    if (!open) return;
    chat.pane.transferSubmit.disabled = true;
    chat.pane.transferSelect.textContent = "";
    var loading = document.createElement("option");
    text(loading, "Loading agents…");
    chat.pane.transferSelect.appendChild(loading);
    if (!send({ type: "agents.list" })) toast("Not connected: try again once the connection is back.");
    chat.pane.transferSelect.focus();
  }

  function onTransferred(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    showTransferPanel(chat, false);
    var to = frame.to && frame.to.display_name;
    endChat(
      chat,
      "transferred",
      to ? "This chat was transferred to " + to + "." : "This chat was moved back to the queue.",
    );
  }

  function onRequeued(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    endChat(
      chat,
      "requeued",
      "This chat was moved back to the queue because your connection lapsed. Another agent may pick it up.",
    );
    announce("Chat with " + visitorName(chat) + " was moved back to the queue.");
  }

  function onError(frame) {
    var detail = frame.detail || frame.code || "Something went wrong.";
    if (frame.client_msg_id) {
      var found = false;
      state.chats.forEach(function (chat) {
        var pending = chat.pending.get(frame.client_msg_id);
        if (pending) {
          found = true;
          failPending(chat, pending, detail);
        }
      });
      if (found) return;
    }
    if (frame.code === "rate_limited") {
      toast("Slow down a little: the server is refusing frames.");
    } else if (frame.code === "agent_unavailable") {
      toast("That agent cannot take this chat right now. Pick someone else or the queue.");
      send({ type: "agents.list" });
    } else if (frame.code === "not_found") {
      toast("That chat is no longer yours.");
    } else if (frame.code !== "conversation_closed") {
      toast(detail);
    }
  }

  // --- chats --------------------------------------------------------------------

  function visitorName(chat) {
    return chat.visitorId ? "Visitor #" + chat.visitorId : "Visitor";
  }

  function upsertChat(data) {
    var chat = state.chats.get(data.id);
    if (!chat) {
      chat = createChat(data);
      state.chats.set(chat.id, chat);
    }
    if (data.visitor && typeof data.visitor.id === "number") chat.visitorId = data.visitor.id;
    if (typeof data.visitor_read_seq === "number") {
      chat.visitorReadSeq = Math.max(chat.visitorReadSeq, data.visitor_read_seq);
    }
    if (data.status === "active" && chat.status !== "active") reopenChat(chat);
    return chat;
  }

  function createChat(data) {
    var chat = {
      id: data.id,
      visitorId: data.visitor && data.visitor.id,
      status: "active",
      messages: new Map(), // seq -> message
      seqs: [], // held seqs, ascending
      rows: new Map(), // seq -> <li>
      pending: new Map(), // client_msg_id -> pending send
      notes: new Map(), // internal note id -> <li>
      unread: 0,
      countedThrough: 0, // highest seq already included in `unread`
      readSeq: 0,
      visitorReadSeq: 0,
      receiptRow: null,
      historyLoaded: false,
      syncing: false,
      visitorTyping: false,
      visitorTypingTimer: null,
      typingSentAt: 0,
      typingActive: false,
      typingIdleTimer: null,
      stickToBottom: true,
    };
    buildItem(chat);
    buildPane(chat);
    return chat;
  }

  function buildItem(chat) {
    var fragment = els.itemTemplate.content.cloneNode(true);
    var entry = part(fragment, ".chat-entry");
    var button = part(entry, ".chat-item");
    chat.item = {
      entry: entry,
      button: button,
      avatar: part(entry, ".avatar"),
      name: part(entry, ".item-name"),
      wait: part(entry, ".item-wait"),
      preview: part(entry, ".item-preview"),
      badge: part(entry, ".badge"),
      badgeCount: part(entry, ".badge-count"),
    };
    entry.dataset.conversation = String(chat.id);
    button.addEventListener("click", function () {
      selectChat(chat.id, true);
    });
    els.list.appendChild(entry);
  }

  function buildPane(chat) {
    var fragment = els.paneTemplate.content.cloneNode(true);
    var pane = part(fragment, ".pane");
    var input = part(pane, ".composer-input");
    var label = part(pane, ".composer-label");
    var log = part(pane, ".log");
    var inputId = "composer-" + chat.id;
    var titleId = "pane-title-" + chat.id;
    input.id = inputId;
    label.htmlFor = inputId;
    part(pane, ".pane-title").id = titleId;
    pane.setAttribute("aria-labelledby", titleId);
    pane.dataset.conversation = String(chat.id);
    chat.pane = {
      root: pane,
      avatar: part(pane, ".avatar"),
      title: part(pane, ".pane-title"),
      sub: part(pane, ".pane-sub"),
      close: part(pane, ".pane-close"),
      back: part(pane, ".pane-back"),
      notice: part(pane, ".pane-notice"),
      log: log,
      list: part(pane, ".messages"),
      pendingList: part(pane, ".messages-pending"),
      typing: part(pane, ".typing"),
      typingText: part(pane, ".typing-text"),
      form: part(pane, ".composer"),
      input: input,
      label: label,
      sendButton: part(pane, ".composer-send"),
      noteToggle: part(pane, ".composer-note"),
      transfer: part(pane, ".pane-transfer"),
      transferPanel: part(pane, ".transfer-panel"),
      transferSelect: part(pane, ".transfer-select"),
      transferSubmit: part(pane, ".transfer-submit"),
    };
    chat.pane.transfer.addEventListener("click", function () {
      if (chat.status === "active") showTransferPanel(chat, chat.pane.transferPanel.hidden);
    });
    part(pane, ".transfer-cancel").addEventListener("click", function () {
      showTransferPanel(chat, false);
      chat.pane.transfer.focus();
    });
    chat.pane.transferPanel.addEventListener("submit", function (event) {
      event.preventDefault();
      var value = chat.pane.transferSelect.value;
      var frame = { type: "conversation.transfer", conversation: chat.id, to_agent: value ? Number(value) : null };
      if (send(frame)) chat.pane.transferSubmit.disabled = true;
      else toast("Not connected: the chat can be transferred once the connection is back.");
    });
    chat.pane.noteToggle.addEventListener("change", function () {
      var noting = chat.pane.noteToggle.checked;
      chat.pane.form.classList.toggle("is-note", noting);
      input.placeholder = noting ? "Internal note: only agents see it…" : "Write a reply…";
      if (noting) stopTyping(chat);
    });
    chat.pane.close.addEventListener("click", function () {
      if (chat.status === "active") {
        if (send({ type: "conversation.close", conversation: chat.id })) {
          chat.pane.close.disabled = true;
          text(chat.pane.close, "Closing…");
        } else {
          toast("Not connected: the chat can be closed once the connection is back.");
        }
      } else {
        removeChat(chat);
      }
    });
    chat.pane.back.addEventListener("click", function () {
      root.classList.remove("has-selection");
      chat.item.button.focus();
    });
    chat.pane.form.addEventListener("submit", function (event) {
      event.preventDefault();
      submitComposer(chat);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submitComposer(chat);
      }
    });
    input.addEventListener("input", function () {
      onComposerInput(chat);
    });
    input.addEventListener("blur", function () {
      stopTyping(chat);
    });
    input.addEventListener("focus", function () {
      markRead(chat);
    });
    log.addEventListener("scroll", function () {
      chat.stickToBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
    });
    pane.addEventListener("click", function (event) {
      var retry = event.target.closest(".retry");
      if (!retry) return;
      var pending = chat.pending.get(retry.dataset.clientMsgId);
      if (pending) transmit(chat, pending);
    });
    els.panes.appendChild(pane);
  }

  function removeChat(chat) {
    var wasSelected = state.selected === chat.id;
    chat.item.entry.remove();
    chat.pane.root.remove();
    state.chats.delete(chat.id);
    if (wasSelected) {
      state.selected = null;
      els.emptyPane.hidden = false;
      root.classList.remove("has-selection");
      var next = els.list.querySelector(".chat-item");
      if (next) next.focus();
    }
    refreshCounts();
  }

  function reopenChat(chat) {
    chat.status = "active";
    chat.item.entry.classList.remove("is-ended");
    chat.pane.root.classList.remove("is-ended");
    chat.pane.notice.hidden = true;
    chat.pane.input.disabled = false;
    chat.pane.sendButton.disabled = false;
    chat.pane.close.disabled = false;
    text(chat.pane.close, "Close chat");
    chat.pane.transfer.disabled = false;
  }

  function endChat(chat, status, notice) {
    chat.status = status;
    chat.unread = 0;
    setVisitorTyping(chat, false);
    stopTyping(chat);
    chat.pending.forEach(function (pending) {
      failPending(chat, pending, "The chat is over.");
    });
    chat.item.entry.classList.add("is-ended");
    chat.pane.root.classList.add("is-ended");
    text(chat.pane.notice, notice);
    chat.pane.notice.hidden = false;
    chat.pane.input.disabled = true;
    chat.pane.sendButton.disabled = true;
    chat.pane.close.disabled = false;
    text(chat.pane.close, "Remove from list");
    chat.pane.transfer.disabled = true;
    showTransferPanel(chat, false);
    updateItem(chat);
    refreshCounts();
  }

  function selectChat(id, byUser) {
    var chat = state.chats.get(id);
    if (!chat) return;
    if (state.selected !== null && state.selected !== id) {
      var previous = state.chats.get(state.selected);
      if (previous) {
        previous.pane.root.hidden = true;
        previous.item.button.setAttribute("aria-current", "false");
        previous.item.entry.classList.remove("is-selected");
        stopTyping(previous);
      }
    }
    state.selected = id;
    els.emptyPane.hidden = true;
    chat.pane.root.hidden = false;
    chat.item.button.setAttribute("aria-current", "true");
    chat.item.entry.classList.add("is-selected");
    root.classList.add("has-selection");
    scrollToBottom(chat);
    if (byUser) {
      askNotificationPermissionOnce();
      if (!chat.pane.input.disabled) chat.pane.input.focus();
    }
    markRead(chat);
  }

  // Arrow keys move between chats in the list; Tab leaves it.
  els.list.addEventListener("keydown", function (event) {
    var keys = ["ArrowDown", "ArrowUp", "Home", "End"];
    if (keys.indexOf(event.key) === -1) return;
    var buttons = Array.prototype.slice.call(els.list.querySelectorAll(".chat-item"));
    var index = buttons.indexOf(document.activeElement);
    if (index === -1 || buttons.length === 0) return;
    event.preventDefault();
    var next = index;
    if (event.key === "ArrowDown") next = Math.min(buttons.length - 1, index + 1);
    if (event.key === "ArrowUp") next = Math.max(0, index - 1);
    if (event.key === "Home") next = 0;
    if (event.key === "End") next = buttons.length - 1;
    buttons[next].focus();
  });

  // --- messages -----------------------------------------------------------------

  /* Insert messages by seq, skipping seqs already held. Returns how many were new. */
  function addMessages(chat, messages, live) {
    var added = 0;
    var wasAtBottom = chat.stickToBottom;
    messages.forEach(function (message) {
      if (typeof message.seq !== "number" || chat.messages.has(message.seq)) return;
      if (message.sender === "agent" && message.client_msg_id) {
        var pending = chat.pending.get(message.client_msg_id);
        if (pending) settlePending(chat, pending);
      }
      chat.messages.set(message.seq, message);
      var row = messageRow(chat, message);
      chat.rows.set(message.seq, row);
      insertSorted(chat, message.seq, row);
      added += 1;
    });
    if (added) {
      updateReceipt(chat);
      if (wasAtBottom || !live) scrollToBottom(chat);
    }
    return added;
  }

  /* Internal notes sit after the message they followed (`after_seq`), before any later one. */
  function addNotes(chat, notes) {
    var wasAtBottom = chat.stickToBottom;
    (notes || []).forEach(function (note) {
      if (typeof note.id !== "number" || chat.notes.has(note.id)) return;
      var li = document.createElement("li");
      li.className = "msg msg-note";
      li.dataset.note = String(note.id);
      var label = document.createElement("p");
      label.className = "note-label";
      text(label, "Note" + (note.author ? " by " + note.author : "") + " · only agents see this");
      li.appendChild(label);
      var bubble = document.createElement("div");
      bubble.className = "bubble";
      renderBody(bubble, note.body);
      li.appendChild(bubble);
      chat.notes.set(note.id, li);
      var before = null;
      for (var i = 0; i < chat.seqs.length && !before; i += 1) {
        if (chat.seqs[i] > note.after_seq) before = chat.rows.get(chat.seqs[i]);
      }
      chat.pane.list.insertBefore(li, before);
    });
    if (wasAtBottom) scrollToBottom(chat);
  }

  function insertSorted(chat, seq, row) {
    var seqs = chat.seqs;
    // Nearly always the newest: walk back from the end.
    var i = seqs.length;
    while (i > 0 && seqs[i - 1] > seq) i -= 1;
    seqs.splice(i, 0, seq);
    var before = i + 1 < seqs.length ? chat.rows.get(seqs[i + 1]) : null;
    chat.pane.list.insertBefore(row, before);
  }

  function messageRow(chat, message) {
    var li = document.createElement("li");
    li.className = "msg msg-" + (message.sender === "agent" || message.sender === "system" ? message.sender : "visitor");
    li.dataset.seq = String(message.seq);
    if (message.sender === "system") {
      var note = document.createElement("p");
      note.className = "msg-system-text";
      text(note, message.body);
      li.appendChild(note);
      return li;
    }
    var bubble = document.createElement("div");
    bubble.className = "bubble";
    renderBody(bubble, message.body);
    li.appendChild(bubble);
    var meta = document.createElement("p");
    meta.className = "meta";
    var who = document.createElement("span");
    who.className = "sr-only";
    text(who, message.sender === "agent" ? "You, " : visitorName(chat) + ", ");
    meta.appendChild(who);
    var time = document.createElement("time");
    if (message.sent_at) time.dateTime = message.sent_at;
    text(time, clockTime(message.sent_at));
    meta.appendChild(time);
    if (message.sender === "agent") {
      var receipt = document.createElement("span");
      receipt.className = "receipt";
      meta.appendChild(receipt);
    }
    li.appendChild(meta);
    return li;
  }

  /* "Sent" or "Seen" under my latest message only; earlier ones are implied. */
  function updateReceipt(chat) {
    var lastMine = null;
    for (var i = chat.seqs.length - 1; i >= 0; i -= 1) {
      if (chat.messages.get(chat.seqs[i]).sender === "agent") {
        lastMine = chat.seqs[i];
        break;
      }
    }
    var row = lastMine === null ? null : chat.rows.get(lastMine);
    if (chat.receiptRow && chat.receiptRow !== row) {
      var old = part(chat.receiptRow, ".receipt");
      if (old) {
        text(old, "");
        old.classList.remove("is-seen");
      }
    }
    chat.receiptRow = row;
    if (!row) return;
    var receipt = part(row, ".receipt");
    var seen = chat.visitorReadSeq >= lastMine;
    text(receipt, seen ? "Seen" : "Sent");
    receipt.classList.toggle("is-seen", seen);
  }

  function scrollToBottom(chat) {
    var log = chat.pane.log;
    log.scrollTop = log.scrollHeight;
    chat.stickToBottom = true;
  }

  /* The highest seq up to which nothing is missing. */
  function contiguousSeq(chat) {
    var seqs = chat.seqs;
    // seqs start at 1 and are gapless, so a full prefix has seqs[i] === i + 1.
    if (seqs.length === 0 || seqs[seqs.length - 1] === seqs.length) return seqs.length;
    var lo = 0;
    var hi = seqs.length - 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (seqs[mid] === mid + 1) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function maxSeq(chat) {
    return chat.seqs.length ? chat.seqs[chat.seqs.length - 1] : 0;
  }

  function requestSync(chat, afterSeq) {
    if (chat.syncing) return;
    if (send({ type: "sync", conversation: chat.id, after_seq: afterSeq })) chat.syncing = true;
  }

  function checkGaps(chat) {
    if (!chat.historyLoaded) return;
    var upTo = contiguousSeq(chat);
    if (upTo < maxSeq(chat)) requestSync(chat, upTo);
  }

  function countVisitorMessagesAfter(chat, seq) {
    var n = 0;
    for (var i = chat.seqs.length - 1; i >= 0 && chat.seqs[i] > seq; i -= 1) {
      if (chat.messages.get(chat.seqs[i]).sender === "visitor") n += 1;
    }
    return n;
  }

  function lastPreview(chat) {
    if (!chat.seqs.length) return "";
    var message = chat.messages.get(chat.seqs[chat.seqs.length - 1]);
    return (message.sender === "agent" ? "You: " : "") + message.body.replace(/\s+/g, " ");
  }

  /* When the visitor's oldest message since my last reply was sent, or null. */
  function waitingSince(chat) {
    var since = null;
    for (var i = chat.seqs.length - 1; i >= 0; i -= 1) {
      var message = chat.messages.get(chat.seqs[i]);
      if (message.sender === "agent") break;
      if (message.sender === "visitor") since = message.sent_at;
    }
    return since ? new Date(since) : null;
  }

  // --- reading ------------------------------------------------------------------

  function markRead(chat) {
    if (state.selected !== chat.id || chat.status !== "active" || !pageAttentive()) return;
    var seq = maxSeq(chat);
    if (seq > chat.readSeq) {
      if (!send({ type: "read", conversation: chat.id, seq: seq })) return;
      chat.readSeq = seq;
    }
    if (chat.unread) {
      chat.unread = 0;
      updateItem(chat);
      refreshCounts();
    }
  }

  function markSelectedRead() {
    var chat = state.selected !== null && state.chats.get(state.selected);
    if (chat) markRead(chat);
    refreshCounts();
  }

  window.addEventListener("focus", markSelectedRead);
  document.addEventListener("visibilitychange", markSelectedRead);

  // --- typing -------------------------------------------------------------------

  function setVisitorTyping(chat, active) {
    window.clearTimeout(chat.visitorTypingTimer);
    chat.visitorTyping = active && chat.status === "active";
    chat.pane.typing.hidden = !chat.visitorTyping;
    text(chat.pane.typingText, chat.visitorTyping ? visitorName(chat) + " is typing…" : "");
    if (chat.visitorTyping) {
      chat.visitorTypingTimer = window.setTimeout(function () {
        setVisitorTyping(chat, false);
      }, VISITOR_TYPING_TTL_MS);
    }
    updateItem(chat);
  }

  function onComposerInput(chat) {
    // Writing a note is nothing the visitor may see, not even as "typing".
    if (chat.status !== "active" || chat.pane.noteToggle.checked) return;
    if (!chat.pane.input.value.trim()) {
      stopTyping(chat);
      return;
    }
    var now = Date.now();
    if (!chat.typingActive || now - chat.typingSentAt > TYPING_REPEAT_MS) {
      if (send({ type: "typing", conversation: chat.id, active: true })) {
        chat.typingActive = true;
        chat.typingSentAt = now;
      }
    }
    window.clearTimeout(chat.typingIdleTimer);
    chat.typingIdleTimer = window.setTimeout(function () {
      stopTyping(chat);
    }, TYPING_IDLE_MS);
  }

  function stopTyping(chat) {
    window.clearTimeout(chat.typingIdleTimer);
    if (!chat.typingActive) return;
    chat.typingActive = false;
    if (chat.status === "active") send({ type: "typing", conversation: chat.id, active: false });
  }

  // --- sending ------------------------------------------------------------------

  function submitComposer(chat) {
    if (chat.status !== "active") return;
    var body = chat.pane.input.value.trim();
    if (!body) return;
    if (chat.pane.noteToggle.checked) {
      var frame = { type: "note.send", conversation: chat.id, client_msg_id: newClientMsgId(), body: body };
      if (send(frame)) chat.pane.input.value = "";
      else toast("Not connected: the note can be saved once the connection is back.");
      return;
    }
    chat.pane.input.value = "";
    stopTyping(chat);
    var pending = { id: newClientMsgId(), body: body, state: "sending", timer: null, row: null };
    pending.row = pendingRow(chat, pending);
    chat.pending.set(pending.id, pending);
    chat.pane.pendingList.appendChild(pending.row);
    scrollToBottom(chat);
    transmit(chat, pending);
  }

  function pendingRow(chat, pending) {
    var li = document.createElement("li");
    li.className = "msg msg-agent is-pending";
    var bubble = document.createElement("div");
    bubble.className = "bubble";
    renderBody(bubble, pending.body);
    li.appendChild(bubble);
    var meta = document.createElement("p");
    meta.className = "meta";
    var status = document.createElement("span");
    status.className = "send-state";
    meta.appendChild(status);
    var retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.dataset.clientMsgId = pending.id;
    retry.hidden = true;
    text(retry, "Retry");
    meta.appendChild(retry);
    li.appendChild(meta);
    return li;
  }

  function transmit(chat, pending) {
    window.clearTimeout(pending.timer);
    setPendingState(chat, pending, "sending");
    var sent = send({
      type: "message.send",
      conversation: chat.id,
      client_msg_id: pending.id,
      body: pending.body,
    });
    // Not connected: it goes out after the next `ready` (resendPending).
    if (!sent) return;
    pending.timer = window.setTimeout(function () {
      if (chat.pending.get(pending.id) === pending) failPending(chat, pending, "No answer from the server.");
    }, ACK_TIMEOUT_MS);
  }

  function resendPending(chat) {
    chat.pending.forEach(function (pending) {
      if (pending.state === "sending") transmit(chat, pending);
    });
  }

  function setPendingState(chat, pending, kind, detail) {
    pending.state = kind;
    pending.row.classList.toggle("is-failed", kind === "failed");
    var status = part(pending.row, ".send-state");
    var retry = part(pending.row, ".retry");
    if (kind === "failed") {
      text(status, "Not sent" + (detail ? ": " + detail : "."));
      retry.hidden = chat.status !== "active";
    } else {
      text(status, state.connected ? "Sending…" : "Waiting for connection…");
      retry.hidden = true;
    }
  }

  function failPending(chat, pending, detail) {
    window.clearTimeout(pending.timer);
    setPendingState(chat, pending, "failed", detail);
  }

  function settlePending(chat, pending) {
    window.clearTimeout(pending.timer);
    pending.row.remove();
    chat.pending.delete(pending.id);
  }

  // --- list items, counts, title ------------------------------------------------

  function updateItem(chat) {
    var item = chat.item;
    var name = visitorName(chat);
    text(item.name, name);
    text(item.avatar, chat.visitorId ? String(chat.visitorId).slice(-2) : "V");
    item.avatar.dataset.tone = String((chat.visitorId || 0) % 6);
    text(chat.pane.title, name);
    text(chat.pane.avatar, item.avatar.textContent);
    chat.pane.avatar.dataset.tone = item.avatar.dataset.tone;
    text(chat.pane.label, "Reply to " + name);
    var subtitle = "Chat #" + chat.id;
    if (chat.seqs.length) {
      subtitle += " · started " + clockTime(chat.messages.get(chat.seqs[0]).sent_at);
    }
    if (chat.status === "closed") subtitle += " · closed";
    else if (chat.status === "requeued") subtitle += " · moved back to the queue";
    else if (chat.status === "ended") subtitle += " · no longer yours";
    text(chat.pane.sub, subtitle);

    if (chat.visitorTyping) {
      text(item.preview, "typing…");
      item.preview.classList.add("is-typing");
    } else {
      text(item.preview, lastPreview(chat) || (chat.historyLoaded ? "No messages" : "Loading…"));
      item.preview.classList.remove("is-typing");
    }
    if (chat.unread > 0 && chat.status === "active") {
      text(item.badgeCount, String(chat.unread));
      item.badge.hidden = false;
      item.entry.classList.add("has-unread");
    } else {
      item.badge.hidden = true;
      item.entry.classList.remove("has-unread");
    }
    updateWait(chat, Date.now());
  }

  function updateWait(chat, now) {
    var wait = chat.item.wait;
    var since = chat.status === "active" ? waitingSince(chat) : null;
    if (!since || isNaN(since.getTime())) {
      if (chat.status !== "active") {
        text(wait, chat.status === "closed" ? "Closed" : "Ended");
        wait.hidden = false;
        wait.dataset.level = "ended";
      } else {
        wait.hidden = true;
      }
      return;
    }
    var ms = now - since.getTime();
    text(wait, "Waiting " + duration(ms));
    wait.title = "Waiting for a reply since " + clockTime(since.toISOString());
    wait.dataset.level = ms >= 5 * 60000 ? "urgent" : ms >= 2 * 60000 ? "warn" : "ok";
    wait.hidden = false;
  }

  window.setInterval(function () {
    var now = Date.now();
    state.chats.forEach(function (chat) {
      updateWait(chat, now);
    });
  }, WAIT_TICK_MS);

  function refreshCounts() {
    var open = 0;
    var unread = 0;
    state.chats.forEach(function (chat) {
      if (chat.status === "active") {
        open += 1;
        unread += chat.unread;
      }
    });
    text(els.load, String(open));
    text(els.capacity, String(state.capacity));
    els.listEmpty.hidden = state.chats.size > 0;
    document.title = unread > 0 ? "(" + unread + ") " + TITLE : TITLE;
  }

  function setQueueLength(value) {
    if (typeof value !== "number") return;
    state.queueLength = value;
    text(els.queue, String(value));
    els.queue.parentElement.classList.toggle("has-queue", value > 0);
  }

  // --- presence -----------------------------------------------------------------

  function updatePresenceControls() {
    var buttons = els.presence.querySelectorAll(".presence-option");
    Array.prototype.forEach.call(buttons, function (button) {
      var status = button.dataset.status;
      button.setAttribute("aria-pressed", String(state.status === status));
      button.classList.toggle("is-pending", state.presenceWanted === status);
      button.disabled = !state.connected;
    });
    root.dataset.presence = state.status;
    if (state.presenceWanted) {
      text(els.presenceNote, "Switching to " + state.presenceWanted + "…");
    } else {
      text(
        els.presenceNote,
        state.status === "available" ? "You are taking new chats." : "Away: no new chats come to you.",
      );
    }
  }

  els.presence.addEventListener("click", function (event) {
    var button = event.target.closest(".presence-option");
    if (!button) return;
    askNotificationPermissionOnce();
    var wanted = button.dataset.status;
    if (wanted === state.status && state.presenceWanted === null) return;
    if (send({ type: "presence", status: wanted })) {
      state.presenceWanted = wanted;
      updatePresenceControls();
    }
  });

  // --- desktop notifications ----------------------------------------------------

  function notificationsSupported() {
    return "Notification" in window;
  }

  function alreadyAsked() {
    try {
      return window.localStorage.getItem(NOTIFY_ASKED_KEY) === "1";
    } catch (err) {
      return false;
    }
  }

  function rememberAsked() {
    try {
      window.localStorage.setItem(NOTIFY_ASKED_KEY, "1");
    } catch (err) {
      /* private mode: we may ask again next visit */
    }
  }

  /* Called from user gestures only; asks at most once, and nothing depends on the answer. */
  function askNotificationPermissionOnce() {
    if (!notificationsSupported() || Notification.permission !== "default" || alreadyAsked()) {
      return;
    }
    rememberAsked();
    try {
      var asked = Notification.requestPermission(updateNotifyButton);
      if (asked && typeof asked.then === "function") asked.then(updateNotifyButton, updateNotifyButton);
    } catch (err) {
      /* old browsers without the promise form */
    }
  }

  function updateNotifyButton() {
    els.notify.hidden = !(
      notificationsSupported() &&
      Notification.permission === "default" &&
      alreadyAsked()
    );
  }

  els.notify.addEventListener("click", function () {
    try {
      window.localStorage.removeItem(NOTIFY_ASKED_KEY);
    } catch (err) {
      /* ignore */
    }
    askNotificationPermissionOnce();
    els.notify.hidden = true;
  });

  function notifyDesktop(title, body, chat) {
    if (pageAttentive() && state.selected === chat.id) return;
    if (!notificationsSupported() || Notification.permission !== "granted") return;
    try {
      var note = new Notification(title, {
        body: body.slice(0, 200),
        tag: "supportdesk-chat-" + chat.id,
      });
      note.onclick = function () {
        window.focus();
        selectChat(chat.id, true);
        note.close();
      };
    } catch (err) {
      /* some platforms only allow notifications from a service worker */
    }
  }

  // --- start --------------------------------------------------------------------

  updatePresenceControls();
  updateNotifyButton();
  refreshCounts();
  connect();
})();
