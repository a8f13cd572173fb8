/**
 * microsse.js: a thin wrapper over EventSource for MicroSSE hubs. An ES module with no
 * dependencies and no build step; `microsse serve` serves it at /microsse.js.
 *
 *   import { MicroSSE } from "/microsse.js";
 *   const stream = new MicroSSE("/events/news", {
 *     events: ["price"],                     // named event types to receive besides "message"
 *     onEvent: (e) => show(e.type, e.lastEventId, e.data),
 *     onGap: (gap) => warn(gap.lastEventId, gap.reason),  // "evicted" | "unknown"
 *     onExpired: (info) => renewToken(info.exp),         // the stream has ended
 *   });
 *   stream.addEventListener("price", (e) => ...);        // one type only
 *   stream.lastEventId;                                  // the last id received
 *   stream.close();
 *
 * Events are plain objects {type, data, lastEventId}. EventSource only delivers named event
 * types it was asked for, so name them in `events` or with addEventListener (before they are
 * published). The hub's own events are not given to onEvent: `microsse.gap` (the hub could not
 * replay everything after the id the stream resumed from; its data is {"lastEventId", "reason"})
 * goes to onGap, and `microsse.expired` (the subscriber's token expired; data {"exp": N}) goes to
 * onExpired, after which the stream is closed: reconnecting with that token would only get 401,
 * so open a new MicroSSE with a fresh token and `lastEventId: old.lastEventId`.
 *
 * Shared mode (the default where the browser has Web Locks and BroadcastChannel): the tabs of
 * one origin that open the same URL share one connection. A Web Lock elects one leader tab,
 * which holds the EventSource and rebroadcasts every event (type, data, lastEventId) on a
 * BroadcastChannel; the other tabs (followers) receive them from there. When the leader tab
 * closes, the browser gives the lock to another tab, which opens the stream again with
 * ?lastEventId=<the last id it saw> (EventSource cannot set headers; the hub takes the query
 * parameter), so the hub replays what was missed. The new leader first tells the other tabs
 * that id; each remembers the ids it delivered, in order, so it knows how many of the replayed
 * events it already has past that id, and drops exactly those, by position, each only if its id
 * is the one expected there. No event is delivered twice across a change of leader, and an id
 * seen before is not a repeat in itself: two channels of one stream may share ids (a publisher
 * may give its own), and their events all come through. An event without an id (from another
 * server) is never dropped.
 *
 * Options:
 *   shared           false: a plain EventSource in this tab (default true when supported)
 *   withCredentials  send cookies cross-origin (EventSource's option; the hub must allow the
 *                    origin with --cors-origin)
 *   lastEventId      resume after this id from the start (e.g. one saved before a reload)
 *   events           named event types to listen for, besides "message"
 *   name             the lock and channel name (default: derived from the URL): tabs with the
 *                    same name share one stream, so give different ones for different streams
 *   resumeParameter  the query parameter a new leader resumes with (default: "lastEventId";
 *                    on a Mercure hub's /.well-known/mercure, "last_event_id", or draft-07's
 *                    "lastEventID" when the URL subscribes with topic=)
 *   onEvent(e), onGap(gap, e), onExpired(info, e), onState(state)
 *
 * Properties: lastEventId; role ("leader", "follower" or "single"); state ("connecting",
 * "open", "reconnecting" or "closed"; in a follower, the leader's); url.
 *
 * Mercure (docs/MERCURE.md): mercureURL(hub, {match, urlPattern, topic}) builds the subscribe
 * URL (values encoded as URLSearchParams encodes them, as the draft requires; `topic` is
 * draft-07's); a MicroSSE on it shares one stream across tabs and resumes with the hub's
 * parameter. Name the update types a publisher sets in `events`. Private updates need the token
 * in the hub's cookie (set by the application's backend, HttpOnly) and, cross-origin,
 * `withCredentials: true`. What EventSource cannot give: the `Mercure-Last-Event-ID` response
 * header (EventSource exposes no headers), so a resume from an id the hub no longer holds is not
 * reported (the hub then replays what it has; onGap is for MicroSSE channels), and a token sent
 * as `Authorization: Bearer` (EventSource sends no headers: use the cookie).
 *
 *   import { MicroSSE, mercureURL } from "/microsse.js";
 *   const url = mercureURL("https://hub.example/.well-known/mercure", { urlPattern: ["https://example.com/books/:id"] });
 *   const books = new MicroSSE(url, { withCredentials: true, onEvent: (e) => show(JSON.parse(e.data)) });
 */

const GAP = "microsse.gap";
const EXPIRED = "microsse.expired";
const REMEMBERED_IDS = 1024;
const MERCURE_PATH = "/.well-known/mercure";

/**
 * The subscribe URL of the Mercure hub at `hub`: `match` (exact topics), `urlPattern`
 * (match_urlpattern) and, for a draft-07 hub, `topic` (each a string or an array).
 */
export function mercureURL(hub, { match = [], urlPattern = [], topic = [] } = {}) {
  const url = new URL(hub, location.href);
  for (const value of [].concat(match)) url.searchParams.append("match", value);
  for (const value of [].concat(urlPattern)) url.searchParams.append("match_urlpattern", value);
  for (const value of [].concat(topic)) url.searchParams.append("topic", value);
  return url.href;
}

/** The query parameter a stream of `url` resumes with. */
function resumeParameter(url) {
  const parsed = new URL(url);
  if (!parsed.pathname.endsWith(MERCURE_PATH)) return "lastEventId";
  return parsed.searchParams.has("topic") ? "lastEventID" : "last_event_id";
}

function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return { raw: data };
  }
}

/** Calls fn without letting it throw into the helper (the error is still reported). */
function safely(fn, ...args) {
  if (typeof fn !== "function") return;
  try {
    fn(...args);
  } catch (err) {
    if (typeof reportError === "function") reportError(err);
    else setTimeout(() => { throw err; });
  }
}

export class MicroSSE {
  /**
   * @param {string} url  the stream, e.g. "/events/news" or "https://hub.example/events?channel=a&channel=b"
   * @param {object} [options]  see the top of this file
   */
  constructor(url, options = {}) {
    this.options = options;
    this.url = new URL(url, location.href).href;
    this.withCredentials = Boolean(options.withCredentials);
    this.lastEventId = options.lastEventId == null ? "" : String(options.lastEventId);
    this._resumeParameter = options.resumeParameter || resumeParameter(this.url);
    this.state = "connecting";
    this._types = new Set(["message", ...(options.events || [])]);
    this._listeners = new Map(); // type -> Set of functions
    this._delivered = []; // the ids of the last REMEMBERED_IDS events delivered, in order
    this._skip = []; // after a change of leader: the ids of replayed events already delivered
    this._source = null;
    this._closed = false;

    const canShare = typeof BroadcastChannel === "function" && typeof navigator !== "undefined" && navigator.locks;
    if (options.shared === false || !canShare) {
      this.role = "single";
      this._open();
      return;
    }
    this.role = "follower";
    this.name = options.name || "microsse " + (this.withCredentials ? "credentials " : "") + this.url;
    this._channel = new BroadcastChannel(this.name);
    this._channel.onmessage = (m) => this._onMessage(m.data);
    this._abort = new AbortController();
    this._post({ k: "hello", types: [...this._types] });
    navigator.locks
      .request(this.name, { signal: this._abort.signal }, () => this._lead())
      .catch(() => {}); // AbortError: closed before this tab became the leader
  }

  /** Calls fn with every event of this type (named types are then listened for in every tab). */
  addEventListener(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    if (type !== GAP && type !== EXPIRED && !this._types.has(type)) {
      this._addTypes([type]);
      this._post({ k: "types", types: [type] });
    }
  }

  removeEventListener(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  /** Closes the stream in this tab; in shared mode, another tab (if any) takes over. */
  close() {
    if (this._closed) return;
    this._closed = true;
    if (this._source) this._source.close();
    this._source = null;
    if (this._abort) this._abort.abort();
    if (this._release) this._release();
    if (this._channel) this._channel.close();
    this.state = "closed";
    safely(this.options.onState, "closed");
  }

  // --- leader (or single): the EventSource ---

  _lead() {
    if (this._closed) return undefined;
    this.role = "leader";
    // Before any replayed event: where the replay starts, so the other tabs can drop what they have.
    this._post({ k: "resume", lastEventId: this.lastEventId });
    this._open();
    // The lock is held until this promise resolves: at close(), or when the tab goes away.
    return new Promise((resolve) => { this._release = resolve; });
  }

  _open() {
    const url = new URL(this.url);
    if (this.lastEventId) url.searchParams.set(this._resumeParameter, this.lastEventId);
    const source = new EventSource(url.href, { withCredentials: this.withCredentials });
    this._source = source;
    this._listening = new Set();
    this._setState("connecting");
    source.addEventListener("open", () => this._setState("open"));
    source.addEventListener("error", () => {
      this._setState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
    });
    for (const type of [GAP, EXPIRED, ...this._types]) this._listen(type);
  }

  _listen(type) {
    if (!this._source || this._listening.has(type)) return;
    this._listening.add(type);
    this._source.addEventListener(type, (e) => {
      this._receive({ type: e.type, data: e.data, lastEventId: e.lastEventId }, true);
    });
  }

  // --- every tab ---

  _receive(event, fromStream) {
    if (this._closed) return;
    const own = event.type === GAP || event.type === EXPIRED;
    if (!own && event.lastEventId) {
      if (this._skip.length > 0) {
        // Replayed after a change of leader: the next one this tab delivered past the resume id?
        if (event.lastEventId === this._skip[0]) {
          this._skip.shift();
          return;
        }
        this._skip = []; // another event than this tab had next: nothing more is a repeat
      }
      this._delivered.push(event.lastEventId);
      if (this._delivered.length > REMEMBERED_IDS) this._delivered.shift();
      this.lastEventId = event.lastEventId;
    }
    if (fromStream) this._post({ k: "event", event });
    if (event.type === GAP) safely(this.options.onGap, parse(event.data), event);
    else if (event.type === EXPIRED) safely(this.options.onExpired, parse(event.data), event);
    else safely(this.options.onEvent, event);
    for (const fn of this._listeners.get(event.type) || []) safely(fn, event);
    if (event.type === EXPIRED) this.close();
  }

  _onMessage(msg) {
    if (this._closed || !msg) return;
    if (msg.k === "event") {
      this._receive(msg.event, false);
    } else if (msg.k === "resume") {
      // A new leader replays from its last id: what this tab delivered after that id comes again.
      const at = msg.lastEventId ? this._delivered.lastIndexOf(msg.lastEventId) : -1;
      this._skip = at >= 0 ? this._delivered.slice(at + 1) : [];
    } else if (msg.k === "hello") {
      // A new tab: learn its types; tell it ours, and the leader tells where the stream is.
      this._addTypes(msg.types);
      const reply = { k: "types", types: [...this._types] };
      if (this.role === "leader") Object.assign(reply, { lastEventId: this.lastEventId, state: this.state });
      this._post(reply);
    } else if (msg.k === "types") {
      this._addTypes(msg.types);
      if (msg.lastEventId && !this.lastEventId) this.lastEventId = msg.lastEventId;
      if (msg.state && this.role === "follower") this._setState(msg.state);
    } else if (msg.k === "state" && this.role === "follower") {
      this._setState(msg.state);
    }
  }

  _addTypes(types) {
    for (const type of types || []) {
      if (this._types.has(type)) continue;
      this._types.add(type);
      this._listen(type);
    }
  }

  _setState(state) {
    if (this._closed || state === this.state) return;
    this.state = state;
    if (this.role === "leader") this._post({ k: "state", state });
    safely(this.options.onState, state);
  }

  _post(msg) {
    if (this._channel && !this._closed) this._channel.postMessage(msg);
  }
}

export default MicroSSE;
