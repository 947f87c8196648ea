// Sign-in with an API key when the server needs one, and what the key's role may do: controls
// marked data-needs="inspector" or data-needs="admin" are hidden (and disabled) for lesser roles.
// The server decides (401 / 403); this only keeps the page from offering what would be refused.
import { ApiError, api, session, setKey } from "./api.js";
import { $, clearErrors } from "./dom.js";

const RANK = { viewer: 1, inspector: 2, admin: 3 };
export const who = { name: null, role: null, auth: true };

/** Whether the signed-in role may use a control that needs ``role``. */
export const may = (role) => (RANK[who.role] || 0) >= (RANK[role] || 0);

export function applyRole() {
  for (const control of document.querySelectorAll("[data-needs]")) {
    const allowed = may(control.dataset.needs);
    control.classList.toggle("not-allowed", !allowed);
    if ("disabled" in control && !allowed) control.disabled = true;
  }
  $("score-denied").hidden = !who.role || may("inspector");
  const badge = $("who");
  badge.hidden = !who.role;
  $("who-name").textContent = who.auth ? who.name || "" : "no sign-in required";
  $("who-role").textContent = who.role || "";
  $("who-role").dataset.role = who.role || "";
  $("sign-out").hidden = !who.auth;
}

function askForKey(message) {
  who.role = null;
  $("signin").hidden = false;
  $("app").hidden = true;
  $("signin-status").textContent = message || "";
  $("signin-key").focus();
}

/** Ask the server who this key is, asking the user for a key while it refuses; ``onSignedIn(who)``
 * runs after each sign-in (at once when no key is needed, again after a refused key is replaced). */
export function signIn(onSignedIn) {
  const signedIn = (body) => {
    Object.assign(who, { name: body.name, role: body.role, auth: body.keys_required });
    $("signin").hidden = true;
    $("app").hidden = false;
    clearErrors();  // what failed for want of a key
    applyRole();
    onSignedIn(who);
  };
  // A refused key is forgotten and the server asked again without one: a station that needs no
  // key (yet) lets the page in; one that does asks, saying why the key was refused.
  const check = async (refused = "") => {
    let body;
    try {
      body = await api("me");
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) {
        askForKey(`cannot reach the server: ${error.message}`);
      } else if (session.key) {
        setKey("");
        await check(`the server refused this key: ${error.message}`);
      } else {
        askForKey(refused);
      }
      return;
    }
    signedIn(body);
  };
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey($("signin-key").value.trim());
    $("signin-key").value = "";
    check();
  });
  check();
}

export function wireSignOut() {
  $("sign-out").addEventListener("click", () => { setKey(""); window.location.reload(); });
  // A key revoked while the page is open: the next refused request asks for a new one.
  session.onUnauthorized = () => { if (who.auth && who.role) { setKey(""); askForKey("the key was refused; sign in again"); } };
}
