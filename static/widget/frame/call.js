/* supportdesk widget frame: a call from the agent (docs/protocol.md "Calls").
 *
 * Loaded by main.js only when a call is offered (a dynamic import, outside the frame's
 * weight budget: tests/test_widget_size.py), with its own stylesheet. The visitor sees
 * the invitation and accepts or declines; nothing asks for the microphone or camera
 * before that click, and then the browser asks too. The agent's tab makes the offers;
 * this tab answers them. Media goes browser to browser, never through the server.
 * Another tab of the visitor shows that the call was answered elsewhere. */
import { el, moreText, scrollDown, sendFrame, t, ui } from './chat.js';

await moreText();

const css = document.createElement('link');
css.rel = 'stylesheet';
css.href = new URL('../call.css', import.meta.url).href;
document.head.appendChild(css);

const ENDED = {
  hangup: t('call_ended'),
  declined: t('call_declined'),
  timeout: t('call_missed'),
  disconnected: t('call_lost'),
};

let offer = null; // the invitation on screen: {id, media, agent, iceServers}
let call = null; // the call this tab answered: {id, media, pc, stream, queued, ...}
let hideTimer = null;

const box = el('section', 'sd-call');
box.setAttribute('aria-label', t('call'));
box.hidden = true;
const title = el('p', 'sd-call-title');
const note = el('p', 'sd-call-note');
note.setAttribute('role', 'status');
const media = el('div', 'sd-call-media');
const remote = el('video', 'sd-call-remote');
remote.autoplay = remote.playsInline = true;
const local = el('video', 'sd-call-local');
local.autoplay = local.playsInline = local.muted = true;
media.append(remote, local);
const buttons = el('div', 'sd-call-buttons');
const button = (className, label) => {
  const b = el('button', 'sd-call-button ' + className, label);
  b.type = 'button';
  return b;
};
const accept = button('sd-call-accept', t('accept'));
const decline = button('sd-call-decline', t('decline'));
const mute = button('sd-call-mute', t('mute'));
const camera = button('sd-call-camera', t('camera_off'));
const hangUp = button('sd-call-hangup', t('hang_up'));
buttons.append(accept, decline, mute, camera, hangUp);
box.append(title, note, media, buttons);
ui.log.before(box);

const show = (what) => {
  clearTimeout(hideTimer);
  box.hidden = false;
  box.dataset.state = what;
  const ringing = what === 'ringing';
  const inCall = what === 'connecting' || what === 'active';
  accept.hidden = decline.hidden = !ringing;
  mute.hidden = hangUp.hidden = !inCall;
  camera.hidden = !inCall || !call || !call.stream.getVideoTracks().length;
  media.hidden = !inCall;
  local.hidden = camera.hidden;
};

const say = (message) => {
  note.textContent = message;
};

const finish = (message) => {
  const current = call;
  call = null;
  offer = null;
  if (current) {
    if (current.pc) current.pc.close();
    current.stream.getTracks().forEach((track) => track.stop());
  }
  remote.srcObject = local.srcObject = null;
  show('ended');
  say(message);
  hideTimer = setTimeout(() => (box.hidden = true), 6000);
};

// --- the invitation ----------------------------------------------------------------
const invited = (f) => {
  if (call) return; // one call at a time; the server says so too
  offer = {
    id: f.call_id,
    media: f.media === 'video' ? 'video' : 'audio',
    agent: (f.agent && f.agent.display_name) || t('support'),
    iceServers: Array.isArray(f.ice_servers) ? f.ice_servers : [],
  };
  const video = offer.media === 'video';
  title.textContent = t(video ? 'video_calling' : 'calling', { name: offer.agent });
  show('ringing');
  say(t(video ? 'call_video_note' : 'call_audio_note'));
  scrollDown(false);
  accept.focus();
};

accept.onclick = async () => {
  const current = offer;
  if (!current) return;
  accept.disabled = decline.disabled = true;
  const video = current.media === 'video';
  say(t(video ? 'allow_video' : 'allow_audio'));
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: current.media === 'video' });
  } catch (error) {
    accept.disabled = decline.disabled = false;
    say(t(video ? 'need_video' : 'need_audio'));
    return;
  }
  accept.disabled = decline.disabled = false;
  if (offer !== current) {
    stream.getTracks().forEach((track) => track.stop()); // ended meanwhile
    return;
  }
  call = { id: current.id, media: current.media, agent: current.agent, stream, pc: null, queued: [] };
  call.pc = connect(call, current.iceServers);
  local.srcObject = stream;
  sendFrame({ type: 'call.accept', call_id: current.id });
  title.textContent = t(video ? 'video_call_with' : 'call_with', { name: current.agent });
  show('connecting');
  say(t('connecting'));
};

decline.onclick = () => {
  if (!offer) return;
  sendFrame({ type: 'call.decline', call_id: offer.id });
};

// --- the connection ----------------------------------------------------------------
const connect = (current, iceServers) => {
  const pc = new RTCPeerConnection({ iceServers });
  current.stream.getTracks().forEach((track) => pc.addTrack(track, current.stream));
  pc.onicecandidate = (event) => {
    if (event.candidate && call === current) {
      sendFrame({ type: 'call.signal', call_id: current.id, data: { candidate: event.candidate.toJSON() } });
    }
  };
  // Every track the agent sends plays in one element: the voice, the camera, and a
  // shared screen, which comes later with a stream of its own (a second offer).
  const heard = new MediaStream();
  const showVideo = () => media.classList.toggle('sd-call-audio', !heard.getVideoTracks().length);
  remote.srcObject = heard;
  pc.ontrack = (event) => {
    const track = event.track;
    heard.addTrack(track);
    const drop = () => {
      heard.removeTrack(track);
      showVideo();
    };
    track.addEventListener('ended', drop);
    for (const stream of event.streams) {
      stream.addEventListener('removetrack', (e) => e.track === track && drop());
    }
    showVideo();
  };
  pc.onconnectionstatechange = () => {
    if (call !== current) return;
    if (pc.connectionState === 'connected') {
      show('active');
      say(t('in_call', { name: current.agent }));
    } else if (pc.connectionState === 'failed') {
      sendFrame({ type: 'call.end', call_id: current.id });
      finish(ENDED.disconnected);
    }
  };
  return pc;
};

const signal = async (f) => {
  const current = call;
  if (!current || current.id !== f.call_id) return;
  const data = f.data || {};
  const pc = current.pc;
  try {
    if (data.type === 'offer') {
      await pc.setRemoteDescription({ type: 'offer', sdp: data.sdp });
      for (const candidate of current.queued.splice(0)) await pc.addIceCandidate(candidate);
      await pc.setLocalDescription(await pc.createAnswer());
      sendFrame({ type: 'call.signal', call_id: current.id, data: { type: 'answer', sdp: pc.localDescription.sdp } });
    } else if (data.candidate) {
      // A candidate may overtake the offer's handling: kept until the offer is set.
      if (pc.remoteDescription) await pc.addIceCandidate(data.candidate);
      else current.queued.push(data.candidate);
    }
  } catch (error) {
    console.warn('call: signal not applied', error);
  }
};

// --- in the call -------------------------------------------------------------------
mute.onclick = () => {
  if (!call) return;
  const on = mute.getAttribute('aria-pressed') !== 'true';
  call.stream.getAudioTracks().forEach((track) => (track.enabled = !on));
  mute.setAttribute('aria-pressed', String(on));
  mute.textContent = t(on ? 'unmute' : 'mute');
};

camera.onclick = () => {
  if (!call) return;
  const off = camera.getAttribute('aria-pressed') !== 'true';
  call.stream.getVideoTracks().forEach((track) => (track.enabled = !off));
  camera.setAttribute('aria-pressed', String(off));
  camera.textContent = t(off ? 'camera_on' : 'camera_off');
};

hangUp.onclick = () => {
  if (!call) return;
  sendFrame({ type: 'call.end', call_id: call.id });
  finish(ENDED.hangup);
};

// --- from main.js ------------------------------------------------------------------
export const onFrame = (f) => {
  if (f.type === 'call.invited') invited(f);
  else if (f.type === 'call.signal') signal(f);
  else if (f.type === 'call.accepted') {
    // Answered in another tab of this visitor: nothing to do here but say so.
    if (offer && offer.id === f.call_id && !call) {
      offer = null;
      finish(t('answered_elsewhere'));
    }
  } else if (f.type === 'call.ended') {
    if ((call && call.id === f.call_id) || (offer && offer.id === f.call_id)) {
      finish(ENDED[f.reason] || ENDED.hangup);
    }
  }
};

// A call frame of ours was refused: the call is over (answered elsewhere, ended).
export const onRefused = () => {
  if (call || offer) finish(ENDED.hangup);
};

// The socket dropped: the server ends a call this tab held, so end it here too. An
// invitation on screen is put away: the reconnected socket is sent it again (right
// after `ready`) if it still rings, and nothing if it ended meanwhile.
export const onSocketLost = () => {
  if (call) finish(ENDED.disconnected);
  else if (offer) {
    offer = null;
    box.hidden = true;
  }
};
