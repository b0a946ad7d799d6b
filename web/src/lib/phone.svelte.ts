// The desktop's own phone: JsSIP over the node's SIP WebSocket (/sip), WebRTC media to the
// node's media engine (DTLS-SRTP). It registers the operator's extension with the account
// the API gives (GET /api/auth/me/phone), rings with a sound and an alert, answers and hangs
// up here; hold, mute, DTMF and transfers stay the call's API commands, which work the same
// for every kind of phone. JsSIP reconnects and registers again by itself after a drop.
import * as JsSIP from "jssip";
import type { RTCSession } from "jssip/lib/RTCSession";
import type { RTCSessionEvent } from "jssip/lib/UA";
import { api } from "./api";

export interface PhoneAccount {
  extension: string;
  uri: string;
  realm: string;
  ha1: string;
  websocket_path: string;
}

export type PhoneStatus = "off" | "connecting" | "registered" | "unregistered" | "failed";
/** Why the phone cannot work, as a message key (shown translated). */
export type PhoneProblem =
  | "phone.noAccount"
  | "phone.micDenied"
  | "phone.micMissing"
  | "phone.disconnected"
  | "phone.registrationFailed"
  | "phone.mediaFailed";

/** The operator's choice, kept in this browser: take calls here, or on a desk phone. */
const ENABLED_KEY = "ccorch.phone";

const RING_ON_S = 1;
const RING_PERIOD_S = 4;

/** European ringing (425 Hz, 1 s on, 3 s off) from WebAudio: no sound file to fetch. */
class Ringer {
  private context: AudioContext | null = null;
  private timer: number | null = null;

  start(): void {
    if (this.timer !== null) return;
    this.context ??= new AudioContext();
    void this.context.resume();
    const burst = (): void => {
      const ctx = this.context;
      if (ctx === null) return;
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = 425;
      gain.gain.value = 0.2;
      osc.connect(gain).connect(ctx.destination);
      osc.start();
      osc.stop(ctx.currentTime + RING_ON_S);
    };
    burst();
    this.timer = window.setInterval(burst, RING_PERIOD_S * 1000);
  }

  stop(): void {
    if (this.timer !== null) window.clearInterval(this.timer);
    this.timer = null;
  }
}

export class Phone {
  status = $state<PhoneStatus>("off");
  extension = $state("");
  /** Take calls in this browser (else the operator's desk phone or softphone rings). */
  enabled = $state(localStorage.getItem(ENABLED_KEY) !== "off");
  problem = $state<PhoneProblem | null>(null);
  detail = $state<string>("");
  /** A call ringing in the browser: who calls. */
  ringing = $state<string | null>(null);
  /** The browser's call is up (media flowing or about to). */
  inCall = $state(false);
  microphones = $state<MediaDeviceInfo[]>([]);
  speakers = $state<MediaDeviceInfo[]>([]);
  microphone = $state<string>("");
  speaker = $state<string>("");

  private ua: JsSIP.UA | null = null;
  private session: RTCSession | null = null;
  private readonly ringer = new Ringer();
  /** Answer by itself a call the node marks "answer-after=0" (Call-Info): the supervisor's
   * own request to listen, whisper or barge, never a customer's call. */
  autoAnswer = false;
  /** The <audio> element the far end plays through (set by the panel). */
  audio: HTMLAudioElement | null = null;

  /** Turn the browser phone on or off (remembered in this browser). */
  async setEnabled(on: boolean): Promise<void> {
    this.enabled = on;
    localStorage.setItem(ENABLED_KEY, on ? "on" : "off");
    if (on) await this.start();
    else this.stop();
  }

  async start(): Promise<void> {
    if (!this.enabled || this.ua !== null) return;
    let account: PhoneAccount;
    try {
      account = await api<PhoneAccount>("GET", "/api/auth/me/phone");
    } catch (e) {
      this.fail("phone.noAccount", e instanceof Error ? e.message : String(e));
      return;
    }
    this.extension = account.extension;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new JsSIP.WebSocketInterface(
      `${scheme}//${location.host}${account.websocket_path}`,
    );
    const ua = new JsSIP.UA({
      sockets: [socket],
      uri: account.uri,
      realm: account.realm,
      ha1: account.ha1,
      authorization_user: account.extension,
      register: true,
      register_expires: 300,
      session_timers: false,
      user_agent: "ccorch-desktop",
      connection_recovery_min_interval: 2,
      connection_recovery_max_interval: 30,
    });
    this.status = "connecting";
    ua.on("connecting", () => {
      if (this.status !== "registered") this.status = "connecting";
    });
    ua.on("disconnected", () => {
      this.status = "connecting";
      this.problem = "phone.disconnected";
    });
    ua.on("registered", () => {
      this.status = "registered";
      if (this.problem === "phone.disconnected" || this.problem === "phone.registrationFailed")
        this.problem = null;
    });
    ua.on("unregistered", () => {
      if (this.status !== "off") this.status = "unregistered";
    });
    ua.on("registrationFailed", (e) => {
      this.status = "failed";
      this.problem = "phone.registrationFailed";
      this.detail = String(e.cause ?? "");
    });
    ua.on("newRTCSession", (e: RTCSessionEvent) => this.onSession(e));
    this.ua = ua;
    ua.start();
    await this.listDevices();
  }

  stop(): void {
    this.ringer.stop();
    if (this.session !== null && !this.session.isEnded()) this.session.terminate();
    this.session = null;
    this.ua?.stop(); // unregisters
    this.ua = null;
    this.status = "off";
    this.ringing = null;
    this.inCall = false;
  }

  private fail(problem: PhoneProblem, detail = ""): void {
    this.status = "failed";
    this.problem = problem;
    this.detail = detail;
  }

  private onSession(e: RTCSessionEvent): void {
    const session = e.session;
    if (e.originator !== "remote") return;
    if (this.session !== null) {
      session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
      return;
    }
    this.session = session;
    const who = session.remote_identity;
    this.ringing = who.display_name || who.uri.user || "";
    this.ringer.start();
    session.on("peerconnection", (p) => this.attach(p.peerconnection));
    const info = e.request.getHeader("Call-Info") ?? "";
    if (this.autoAnswer && /answer-after=0/.test(info)) {
      queueMicrotask(() => this.answer());
    }
    session.on("accepted", () => {
      this.ringer.stop();
      this.ringing = null;
      this.inCall = true;
    });
    const ended = (): void => {
      this.ringer.stop();
      this.ringing = null;
      this.inCall = false;
      this.session = null;
      if (this.audio) this.audio.srcObject = null;
    };
    session.on("ended", ended);
    session.on("failed", (f) => {
      if (f.cause === JsSIP.C.causes.USER_DENIED_MEDIA_ACCESS) this.problem = "phone.micDenied";
      else if (f.cause === JsSIP.C.causes.WEBRTC_ERROR) this.problem = "phone.mediaFailed";
      this.detail = String(f.cause);
      ended();
    });
  }

  private attach(pc: RTCPeerConnection): void {
    pc.addEventListener("track", (ev: RTCTrackEvent) => {
      const audio = this.audio;
      if (audio === null) return;
      audio.srcObject = ev.streams[0] ?? new MediaStream([ev.track]);
      void audio.play().catch(() => undefined);
    });
  }

  /** Take the ringing call here: the microphone is asked for now. */
  answer(): boolean {
    const session = this.session;
    if (session === null || this.ringing === null) return false;
    const audio: MediaTrackConstraints | boolean = this.microphone
      ? { deviceId: { exact: this.microphone } }
      : true;
    this.problem = null;
    session.answer({
      mediaConstraints: { audio, video: false },
      pcConfig: { iceServers: [] },
    });
    return true;
  }

  /** Refuse the ringing call (it goes back to the queue, as a missed offer). */
  decline(): void {
    this.session?.terminate({ status_code: 486, reason_phrase: "Busy Here" });
  }

  async listDevices(): Promise<void> {
    if (!navigator.mediaDevices?.enumerateDevices) {
      this.problem = "phone.micMissing";
      return;
    }
    const all = await navigator.mediaDevices.enumerateDevices();
    this.microphones = all.filter((d) => d.kind === "audioinput");
    this.speakers = all.filter((d) => d.kind === "audiooutput");
    if (this.microphones.length === 0) this.problem = "phone.micMissing";
  }

  async chooseSpeaker(id: string): Promise<void> {
    this.speaker = id;
    const audio = this.audio as
      (HTMLAudioElement & { setSinkId?: (id: string) => Promise<void> }) | null;
    if (audio?.setSinkId) await audio.setSinkId(id);
  }
}
