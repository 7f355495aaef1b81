/* Voice and video calls from a chat (docs/protocol.md "Calls"; docs/calls.md).
 *
 * The socket carries the signaling only; media goes browser to browser (WebRTC). The
 * tab that rings the visitor holds the call: it asks for the microphone (and camera)
 * when the agent clicks, makes the offers once the visitor accepts (and again when the
 * screen is shared in an audio call), and hangs up when the agent does, when the
 * connection fails, or when its socket drops (the server ends the call then too).
 * Another tab of the same agent only says a call is going on elsewhere.
 *
 * Each chat's pane gets a call bar (built here, hooked in by pane.js): Audio call,
 * Video call; then the status, the two videos, Mute, Camera off, Share screen and
 * Hang up. How a call ended (declined, not answered, disconnected) stays shown there. */

import { announce, part, t, text, toast } from "./dom.js";
import { send } from "./socket.js";
import { state } from "./state.js";

// How a call ended, by the `reason` of `call.ended`: keys of chat/dashboard_text.py.
const ENDED_TEXT = {
  hangup: "call_ended",
  declined: "call_declined",
  timeout: "call_timed_out",
  disconnected: "call_disconnected",
};

let ringing = null; // {conversation, media, stream}: asked for, not yet `call.invited`
let call = null; // the call this tab holds: {id, conversation, media, pc, stream, ...}
const elsewhere = new Map(); // conversation id -> call id, held by another tab

const bar = (conversation) => state.chats.get(conversation)?.call;

const el = (tag, className, label) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (label !== undefined) node.textContent = label;
  return node;
};

const button = (className, label) => {
  const node = el("button", `button button-small ${className}`, label);
  node.type = "button";
  return node;
};

// --- the call bar of one chat's pane ------------------------------------------------

export const attachCall = (chat) => {
  const root = el("section", "call");
  root.setAttribute("aria-label", t("call"));
  const start = el("div", "call-start");
  const audio = button("button-outline call-audio", t("audio_call"));
  const video = button("button-outline call-video", t("video_call"));
  start.append(audio, video);
  const status = el("p", "call-status");
  status.setAttribute("role", "status");
  const media = el("div", "call-media");
  media.hidden = true;
  const remote = el("video", "call-remote");
  remote.autoplay = true;
  remote.playsInline = true;
  const local = el("video", "call-local");
  local.autoplay = true;
  local.playsInline = true;
  local.muted = true; // never the agent's own voice back
  media.append(remote, local);
  const controls = el("div", "call-controls");
  controls.hidden = true;
  const mute = button("button-outline call-mute", t("mute"));
  const camera = button("button-outline call-camera", t("camera_off"));
  const screen = button("button-outline call-screen", t("share_screen"));
  const hangUp = button("call-hangup", t("hang_up"));
  controls.append(mute, camera, screen, hangUp);
  root.append(start, status, media, controls);
  const head = part(chat.pane.root, ".pane-head");
  head.after(root);
  chat.call = { root, start, audio, video, status, media, remote, local, controls };
  chat.call.mute = mute;
  chat.call.camera = camera;
  chat.call.screen = screen;
  chat.call.hangUp = hangUp;
  audio.addEventListener("click", () => placeCall(chat, "audio"));
  video.addEventListener("click", () => placeCall(chat, "video"));
  mute.addEventListener("click", toggleMute);
  camera.addEventListener("click", toggleCamera);
  screen.addEventListener("click", toggleScreen);
  hangUp.addEventListener("click", () => hangUpCall());
  paint(chat.id);
};

const paint = (conversation) => {
  const parts = bar(conversation);
  if (!parts) return;
  const chat = state.chats.get(conversation);
  const mine = call && call.conversation === conversation;
  const busy = Boolean(call || ringing);
  parts.start.hidden = mine || elsewhere.has(conversation);
  parts.audio.disabled = parts.video.disabled = busy || chat.status !== "active";
  parts.controls.hidden = !mine;
  parts.media.hidden = !mine;
  if (mine) {
    parts.camera.hidden = parts.screen.hidden = false;
    parts.camera.hidden = !call.stream?.getVideoTracks().length;
    parts.mute.setAttribute("aria-pressed", String(Boolean(call.muted)));
    text(parts.mute, t(call.muted ? "unmute" : "mute"));
    parts.camera.setAttribute("aria-pressed", String(Boolean(call.cameraOff)));
    text(parts.camera, t(call.cameraOff ? "camera_on" : "camera_off"));
    parts.screen.setAttribute("aria-pressed", String(Boolean(call.screenTrack)));
    text(parts.screen, t(call.screenTrack ? "stop_sharing" : "share_screen"));
    parts.screen.disabled = call.status !== "active";
  } else if (elsewhere.has(conversation)) {
    text(parts.status, t("call_elsewhere"));
  }
};

const say = (conversation, message) => {
  const parts = bar(conversation);
  if (parts) text(parts.status, message);
  announce(message);
};

// --- placing the call ------------------------------------------------------------------

const placeCall = async (chat, media) => {
  if (call || ringing) return;
  ringing = { conversation: chat.id, media, stream: null };
  paint(chat.id);
  say(chat.id, t(media === "video" ? "starting_camera" : "starting_microphone"));
  let stream;
  try {
    // The browser asks the agent first; nothing rings until it said yes.
    stream = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: media === "video",
    });
  } catch (error) {
    ringing = null;
    say(
      chat.id,
      t(media === "video" ? "no_camera" : "no_microphone", { reason: error.message || error.name }),
    );
    paint(chat.id);
    return;
  }
  if (!ringing || ringing.conversation !== chat.id) {
    stream.getTracks().forEach((track) => track.stop());
    return;
  }
  ringing.stream = stream;
  if (!send({ type: "call.invite", conversation: chat.id, media })) {
    stopStream(stream);
    ringing = null;
    say(chat.id, t("take_offline"));
    paint(chat.id);
    return;
  }
  say(chat.id, t("calling"));
};

export const onCallInvited = (frame) => {
  if (ringing && ringing.conversation === frame.conversation && !call) {
    call = {
      id: frame.call_id,
      conversation: frame.conversation,
      media: frame.media,
      iceServers: Array.isArray(frame.ice_servers) ? frame.ice_servers : [],
      stream: ringing.stream,
      status: "ringing",
      muted: false,
      cameraOff: false,
      screenTrack: null,
      pc: null,
    };
    ringing = null;
    const parts = bar(call.conversation);
    if (parts) parts.local.srcObject = call.stream;
    say(call.conversation, t("ringing"));
  } else if (!call || call.id !== frame.call_id) {
    elsewhere.set(frame.conversation, frame.call_id);
  }
  paint(frame.conversation);
};

export const onCallAccepted = (frame) => {
  if (!call || call.id !== frame.call_id) return;
  call.status = "active";
  call.startedAt = Date.now();
  say(call.conversation, t("connecting"));
  connect();
  paint(call.conversation);
};

const connect = () => {
  const current = call;
  const pc = new RTCPeerConnection({ iceServers: current.iceServers });
  current.pc = pc;
  pc.addEventListener("icecandidate", (event) => {
    if (event.candidate) signal(current, { candidate: event.candidate.toJSON() });
  });
  pc.addEventListener("track", (event) => {
    const parts = bar(current.conversation);
    if (parts) parts.remote.srcObject = event.streams[0] || new MediaStream([event.track]);
  });
  // This side makes every offer (the visitor's only answers): the first, and one more
  // when sharing the screen adds a video track to an audio call. No glare to resolve.
  pc.addEventListener("negotiationneeded", async () => {
    try {
      await pc.setLocalDescription(await pc.createOffer());
      signal(current, { type: pc.localDescription.type, sdp: pc.localDescription.sdp });
    } catch (error) {
      console.warn("call: offer failed", error);
    }
  });
  pc.addEventListener("connectionstatechange", () => {
    if (call !== current) return;
    if (pc.connectionState === "connected") {
      say(current.conversation, t(current.media === "video" ? "in_video_call" : "in_audio_call"));
    } else if (pc.connectionState === "failed") {
      say(current.conversation, t("call_failed"));
      hangUpCall();
    }
  });
  current.stream.getTracks().forEach((track) => pc.addTrack(track, current.stream));
};

const signal = (current, data) => {
  if (call === current) send({ type: "call.signal", call_id: current.id, data });
};

export const onCallSignal = async (frame) => {
  if (!call || call.id !== frame.call_id || !call.pc) return;
  const data = frame.data || {};
  try {
    if (data.type === "answer") {
      await call.pc.setRemoteDescription({ type: "answer", sdp: data.sdp });
    } else if (data.candidate) {
      await call.pc.addIceCandidate(data.candidate);
    }
  } catch (error) {
    console.warn("call: signal not applied", error);
  }
};

// --- in the call -----------------------------------------------------------------------

const toggleMute = () => {
  if (!call) return;
  call.muted = !call.muted;
  call.stream.getAudioTracks().forEach((track) => (track.enabled = !call.muted));
  paint(call.conversation);
};

const toggleCamera = () => {
  if (!call) return;
  call.cameraOff = !call.cameraOff;
  call.stream.getVideoTracks().forEach((track) => (track.enabled = !call.cameraOff));
  paint(call.conversation);
};

const toggleScreen = async () => {
  if (!call || !call.pc) return;
  const current = call;
  if (current.screenTrack) {
    stopSharing(current);
    return;
  }
  let display;
  try {
    display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch {
    return; // the agent chose not to share
  }
  const track = display.getVideoTracks()[0];
  if (call !== current || !track) {
    display.getTracks().forEach((t) => t.stop());
    return;
  }
  current.screenTrack = track;
  track.addEventListener("ended", () => stopSharing(current));
  const sender = current.pc.getSenders().find((s) => s.track && s.track.kind === "video");
  if (sender) {
    current.cameraSender = sender;
    await sender.replaceTrack(track); // the camera's place, no new offer needed
  } else {
    current.screenSender = current.pc.addTrack(track, display); // an offer follows
  }
  bar(current.conversation).local.srcObject = display;
  paint(current.conversation);
};

const stopSharing = (current) => {
  const track = current.screenTrack;
  if (!track) return;
  current.screenTrack = null;
  track.stop();
  if (current.pc && current.pc.connectionState !== "closed") {
    if (current.cameraSender) {
      current.cameraSender.replaceTrack(current.stream.getVideoTracks()[0] || null);
    } else if (current.screenSender) {
      current.pc.removeTrack(current.screenSender);
    }
  }
  current.cameraSender = current.screenSender = null;
  const parts = bar(current.conversation);
  if (parts) parts.local.srcObject = current.stream;
  paint(current.conversation);
};

const hangUpCall = () => {
  if (!call) return;
  send({ type: "call.end", call_id: call.id });
  finish(call.conversation, ENDED_TEXT.hangup);
};

export const onCallEnded = (frame) => {
  if (elsewhere.get(frame.conversation) === frame.call_id) {
    elsewhere.delete(frame.conversation);
    say(frame.conversation, "");
    paint(frame.conversation);
  }
  if (!call || call.id !== frame.call_id) return;
  finish(call.conversation, ENDED_TEXT[frame.reason] || ENDED_TEXT.hangup);
};

const stopStream = (stream) => stream && stream.getTracks().forEach((track) => track.stop());

/* The call is over: `reason` (a key of ENDED_TEXT's) says how, with its length when the
   agent hung up an answered call. */
const finish = (conversation, reason) => {
  const current = call;
  call = null;
  let message = t(reason);
  if (current) {
    if (current.screenTrack) current.screenTrack.stop();
    stopStream(current.stream);
    if (current.pc) current.pc.close();
    const seconds = current.startedAt ? Math.round((Date.now() - current.startedAt) / 1000) : 0;
    if (seconds && reason === ENDED_TEXT.hangup) {
      const length = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
      message = t("call_ended_after", { duration: length });
    }
  }
  const parts = bar(conversation);
  if (parts) parts.remote.srcObject = parts.local.srcObject = null;
  say(conversation, message);
  paint(conversation);
  state.chats.forEach((chat) => paint(chat.id));
};

// --- refusals and the socket -----------------------------------------------------------

/* An `error` that answers a call frame of this tab; true when handled here. */
export const callError = (frame) => {
  if (frame.code === "call_in_progress" && ringing) {
    const conversation = ringing.conversation;
    stopStream(ringing.stream);
    ringing = null;
    say(conversation, t("call_in_progress"));
    paint(conversation);
    return true;
  }
  if (frame.code === "not_found" && frame.detail === "No such call.") {
    if (call) finish(call.conversation, ENDED_TEXT.hangup);
    return true;
  }
  if (frame.code === "rate_limited" && ringing && ringing.stream) {
    const conversation = ringing.conversation;
    stopStream(ringing.stream);
    ringing = null;
    say(conversation, t("too_many_calls"));
    paint(conversation);
    return true;
  }
  if (frame.code === "not_found" && ringing && ringing.stream) {
    const conversation = ringing.conversation;
    stopStream(ringing.stream);
    ringing = null;
    toast(t("cannot_call"));
    paint(conversation);
    return true;
  }
  return false;
};

/* The socket dropped: the server ends this tab's call (it held it), so end it here. */
export const onCallSocketLost = () => {
  if (ringing) {
    stopStream(ringing.stream);
    ringing = null;
  }
  if (call) finish(call.conversation, ENDED_TEXT.disconnected);
  elsewhere.clear();
};

/* A chat ended or moved on: nothing can ring there; its bar shows the buttons off. */
export const refreshCall = (conversation) => paint(conversation);
