// The node's live event stream (GET /api/events, a WebSocket authenticated by the session
// cookie). A dropped connection is shown at once and reopened with ?since=<last seq>, so
// no event is lost; when the node no longer has them ("resync") the app reloads its state.
// Commands go over the same socket and are answered by a "reply" frame with their id.

import type { LiveEvent } from "./types";

type Listener = (event: LiveEvent) => void;

interface Pending {
  resolve: (reply: Record<string, unknown>) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class LiveStream {
  connected = $state(false);
  /** Set when the node refused the session (4401): log in again. */
  sessionLost = $state(false);
  private socket: WebSocket | null = null;
  private lastSeq: number | null = null;
  // bookkeeping, never rendered: plain collections, not reactive ones
  // eslint-disable-next-line svelte/prefer-svelte-reactivity
  private listeners = new Set<Listener>();
  // eslint-disable-next-line svelte/prefer-svelte-reactivity
  private resyncListeners = new Set<() => void>();
  // eslint-disable-next-line svelte/prefer-svelte-reactivity
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private retry = 0;
  private closed = false;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  /** Opened without ?since=: what happened before is unknown until the first heartbeat. */
  private fresh = false;

  open(): void {
    this.closed = false;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const since = this.lastSeq === null ? "" : `?since=${this.lastSeq}`;
    this.fresh = this.lastSeq === null;
    const socket = new WebSocket(`${scheme}//${location.host}/api/events${since}`);
    this.socket = socket;
    socket.onopen = () => {
      this.connected = true;
      this.retry = 0;
    };
    socket.onmessage = (m: MessageEvent<string>) => this.receive(m.data);
    socket.onclose = (e: CloseEvent) => {
      if (this.socket !== socket) return;
      this.connected = false;
      this.socket = null;
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        p.resolve({ id, status: 0, error: "offline", message: "connection lost" });
      }
      this.pending.clear();
      if (e.code === 4401) {
        this.sessionLost = true;
        return;
      }
      if (!this.closed) {
        // 0.25 s, 0.5 s, 1 s, 2 s, then every 4 s
        const wait = Math.min(4000, 250 * 2 ** this.retry++);
        this.retryTimer = setTimeout(() => this.open(), wait);
      }
    };
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.socket?.close();
    this.socket = null;
    this.connected = false;
    this.lastSeq = null;
  }

  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called when the app must load its state again: the first time a connection knows
   * its position, and when the node no longer has the events missed ("resync"). */
  onResync(listener: () => void): () => void {
    this.resyncListeners.add(listener);
    return () => this.resyncListeners.delete(listener);
  }

  /** A command frame; resolves with its reply ({status, ...}); status 0: not delivered. */
  command(command: string, fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const socket = this.socket;
    if (socket === null || socket.readyState !== WebSocket.OPEN) {
      return Promise.resolve({ status: 0, error: "offline", message: "not connected" });
    }
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ id, status: 0, error: "timeout", message: "no reply" });
      }, 10_000);
      this.pending.set(id, { resolve, timer });
      socket.send(JSON.stringify({ id, command, ...fields }));
    });
  }

  private receive(text: string): void {
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    const type = frame["type"];
    if (type === "reply") {
      const id = Number(frame["id"]);
      const p = this.pending.get(id);
      if (p !== undefined) {
        clearTimeout(p.timer);
        this.pending.delete(id);
        p.resolve(frame);
      }
      return;
    }
    if (typeof frame["seq"] === "number") this.lastSeq = frame["seq"];
    if (type === "heartbeat" && this.fresh) {
      // the stream's position is known now: state loaded from here on misses nothing
      this.fresh = false;
      for (const l of this.resyncListeners) l();
      return;
    }
    if (type === "heartbeat") return;
    if (type === "resync") {
      for (const l of this.resyncListeners) l();
      return;
    }
    for (const l of this.listeners) l(frame as LiveEvent);
  }
}
