// The node's REST API, as the browser app uses it: the session is the HttpOnly cookie set
// at login; a change carries the CSRF value the login left in a readable cookie.

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields: Record<string, string>;
  /** The whole answer (e.g. a refused flow's problems). */
  readonly body: Record<string, unknown>;

  constructor(
    status: number,
    code: string,
    message: string,
    fields: Record<string, string>,
    body: Record<string, unknown> = {},
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields;
    this.body = body;
  }
}

function cookie(name: string): string {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return "";
}

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export async function api<T>(method: Method, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET") headers["x-csrf-token"] = cookie("ccorch_csrf");
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "offline", "no connection to the node", {});
  }
  const text = await response.text();
  let data: unknown;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null; // not JSON (a proxy's error page): the status says enough
  }
  if (!response.ok) {
    const e = (data ?? {}) as { error?: string; message?: string; fields?: Record<string, string> };
    throw new ApiError(
      response.status,
      e.error ?? "error",
      e.message ?? response.statusText,
      e.fields ?? {},
      (data ?? {}) as Record<string, unknown>,
    );
  }
  return data as T;
}

/** A POST whose answer is a file (e.g. a prompt's audio), as a Blob. */
export async function apiBlob(path: string, body: unknown): Promise<Blob> {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": cookie("ccorch_csrf") },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  if (!response.ok) throw new ApiError(response.status, "error", response.statusText, {});
  return response.blob();
}
