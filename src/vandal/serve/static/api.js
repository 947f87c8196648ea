// Requests to this server: the key (if any) as "Authorization: Bearer KEY", retries on 503 (queue
// full) after Retry-After, errors as Error(detail) carrying the HTTP status.
const KEY_ITEM = "vandal.key";
const MAX_RETRIES = 5;

// The key lives in sessionStorage: it survives a reload of this tab but not closing it.
export const session = {
  key: sessionStorage.getItem(KEY_ITEM) || "",
  onUnauthorized: () => {},  // set by the sign-in code: a 401 means "ask for a key"
};

export function setKey(key) {
  session.key = key;
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function withKey(headers = {}) {
  return session.key ? { ...headers, Authorization: `Bearer ${session.key}` } : headers;
}

async function detailOf(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** fetch(path) with the key -> the Response (ok), or throws ApiError. */
export async function request(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(path, { ...options, headers: withKey(options.headers) });
    if (response.status === 503 && attempt < MAX_RETRIES) {
      await sleep(1000 * Number(response.headers.get("Retry-After") || 1));
      continue;
    }
    if (response.status === 401) session.onUnauthorized();
    if (!response.ok) throw new ApiError(await detailOf(response), response.status);
    return response;
  }
}

/** The JSON answer of path (null for 204). */
export async function api(path, options = {}) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

export const postJson = (path, body) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

/** A blob: URL for an authorised download (an <img src> or a link cannot send the key). */
export async function blobUrl(path) {
  const response = await request(path);
  return URL.createObjectURL(await response.blob());
}

// XMLHttpRequest for uploads: fetch cannot report upload progress.
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    if (session.key) xhr.setRequestHeader("Authorization", `Bearer ${session.key}`);
    xhr.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded / event.total); };
    xhr.upload.onload = () => onProgress(1);
    xhr.onerror = () => reject(new ApiError("the server could not be reached", 0));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 401) session.onUnauthorized();
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(body && body.detail ? String(body.detail) : `${xhr.status} ${xhr.statusText}`,
                               xhr.status));
    };
    xhr.send(form);
  });
}
