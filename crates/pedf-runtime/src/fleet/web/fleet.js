// The fleet view of `pedf fleet serve`: the fleet's totals, flexibility, grid requests and every
// park, from the hub's API (/api/v1/fleet, /api/v1/parks, /api/v1/flexibility,
// /api/v1/requests) every 2 s, once logged in with one of the hub's tokens (a viewer's will
// do; the cookie is HttpOnly, this page never holds the token). Chinese by default, English on
// the button; every
// text from a park is set as text, never as markup, and a park's dashboard is linked only
// when its address is http(s).
"use strict";

const T = {
  zh: {
    title: "园区群总览", parks: "园区", "t.parks": "在线 / 园区", "t.pv": "光伏 kW", "t.load": "负荷 kW",
    "t.ev": "充电 kW", "t.battery": "储能 kW（放+）", "t.soc": "储能 SoC", "t.import": "购电 kW",
    "t.export": "上网 kW", "t.co2": "今日 CO₂ t", "t.alarms": "告警",
    "c.park": "园区", "c.status": "通信", "c.pv": "光伏 kW", "c.load": "负荷 kW", "c.ev": "充电 kW",
    "c.battery": "储能 kW", "c.soc": "SoC %", "c.grid": "电网 kW（购+）", "c.co2": "今日 CO₂ kg",
    "c.alarms": "告警", "c.record": "最新记录", ago: "秒前", never: "无", link: "消息总线",
    connected: "已连接",
    flex: "可调能力（来自各园区计划）", "flex.down": "现在可减少购电 kW", "flex.up": "现在可增加购电 kW",
    "flex.hour": "明日（时）", "flex.down.short": "减少 kW", "flex.up.short": "增加 kW",
    "flex.note": "各园区相对其计划可保持一小时的调节量（储能与可调负荷，不含光伏弃光与电动汽车），按园区求和。",
    req: "电网需求响应", "r.id": "编号", "r.window": "时段", "r.kw": "要求减少 kW", "r.held": "园区承担 kW",
    "r.parks": "承担 / 分配园区", "r.delivered": "已完成 / 要求 kWh", "r.none": "暂无",
    "auth.title": "登录", "auth.hint": "请输入本中心的令牌（pedf_…；首次启动时显示一次，或由管理员创建）。",
    "auth.login": "登录", "auth.logout": "退出", "auth.bad": "令牌无效或已吊销",
  },
  en: {
    title: "Fleet", parks: "Parks", "t.parks": "Reporting / parks", "t.pv": "PV kW", "t.load": "Load kW",
    "t.ev": "EV kW", "t.battery": "Battery kW (+discharge)", "t.soc": "Battery SoC", "t.import": "Import kW",
    "t.export": "Export kW", "t.co2": "CO₂ today t", "t.alarms": "Alarms",
    "c.park": "Park", "c.status": "Link", "c.pv": "PV kW", "c.load": "Load kW", "c.ev": "EV kW",
    "c.battery": "Battery kW", "c.soc": "SoC %", "c.grid": "Grid kW (+import)", "c.co2": "CO₂ today kg",
    "c.alarms": "Alarms", "c.record": "Last record", ago: "s ago", never: "none", link: "NATS",
    connected: "connected",
    flex: "Flexibility (from the parks' plans)", "flex.down": "Less import now kW", "flex.up": "More import now kW",
    "flex.hour": "Tomorrow (hour)", "flex.down.short": "less kW", "flex.up.short": "more kW",
    "flex.note": "What each park can change against its plan and hold for an hour (batteries and flexible loads; no PV curtailment, no EV), summed over the parks.",
    req: "Grid requests", "r.id": "Id", "r.window": "Window", "r.kw": "Less import asked kW", "r.held": "Held by parks kW",
    "r.parks": "Holding / asked parks", "r.delivered": "Delivered / asked kWh", "r.none": "none yet",
    "auth.title": "Log in", "auth.hint": "Give a token of this hub's (pedf_…; said once at its first start, or made by an admin).",
    "auth.login": "Log in", "auth.logout": "Log out", "auth.bad": "not a token of this hub's, or revoked",
  },
};
let lang = localStorage.getItem("pedf-fleet-lang") || "zh";
const t = (k) => (T[lang] && T[lang][k]) || k;

function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.getElementById("lang").textContent = lang === "zh" ? "EN" : "中文";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

const num = (v, d = 0) => (typeof v === "number" && isFinite(v) ? v.toFixed(d) : "–");
const set = (id, text) => { document.getElementById(id).textContent = text; };

// A time in the park's own zone (the viewer's may differ), e.g. "06-21 08:45".
function localTime(iso, zone) {
  const opts = { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false };
  try {
    return new Intl.DateTimeFormat("en-CA", { ...opts, timeZone: zone || "UTC" }).format(new Date(iso)).replace(",", "");
  } catch (_) {
    return iso;
  }
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function renderTotals(f) {
  set("t-parks", `${f.parks_reporting} / ${f.parks_known}`);
  set("t-pv", num(f.pv_kw));
  set("t-load", num(f.load_kw));
  set("t-ev", num(f.ev_kw));
  set("t-battery", num(f.battery_kw));
  set("t-soc", f.soc_pct == null ? "–" : `${num(f.soc_pct, 1)} %`);
  set("t-import", num(f.import_kw));
  set("t-export", num(f.export_kw));
  set("t-co2", num(f.today_co2_kg / 1000, 2));
  set("t-alarms", String(f.alarms));
  const link = document.getElementById("link");
  const ok = f.link === "connected";
  link.textContent = `${t("link")}: ${ok ? t("connected") : f.link}`;
  link.className = ok ? "" : "bad";
}

function renderParks(list) {
  const body = document.querySelector("#parks tbody");
  const rows = [];
  for (const p of list) {
    const s = p.state || {};
    const tr = document.createElement("tr");
    tr.dataset.park = p.park;
    if (!p.reporting) tr.className = "stale";
    const name = cell(tr, "");
    const label = (lang === "zh" && s.name_zh) || s.name || p.park;
    if (typeof s.dashboard === "string" && /^https?:\/\//.test(s.dashboard)) {
      const a = document.createElement("a");
      a.href = s.dashboard;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      a.textContent = label;
      name.appendChild(a);
    } else {
      name.textContent = label;
    }
    name.title = p.park;
    cell(tr, p.age_s == null ? t("never") : `${num(p.age_s)} ${t("ago")}`,
      `status ${p.reporting ? "ok" : "stale"}`);
    cell(tr, num(s.pv_kw), "pv");
    cell(tr, num(s.load_kw));
    cell(tr, num(s.ev_kw));
    cell(tr, num(s.battery_kw));
    cell(tr, num(s.soc_pct, 1), "soc");
    cell(tr, num(s.grid_kw), "grid");
    cell(tr, num(s.today_co2_kg, 1));
    const alarms = (s.alarms || []).concat(s.faults || []);
    const a = cell(tr, String(alarms.length), `alarms${alarms.length ? " some" : ""}`);
    a.title = alarms.join("\n");
    cell(tr, p.last_record ? localTime(p.last_record, s.time_zone) : t("never"), "record");
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function renderFlex(today, tomorrow) {
  set("f-down", today.now ? num(today.now.down_kw) : "–");
  set("f-up", today.now ? num(today.now.up_kw) : "–");
  const rows = document.querySelectorAll("#flex-hours tr");
  const [head, down, up] = rows;
  for (const tr of rows) while (tr.children.length > 1) tr.lastChild.remove();
  for (const h of tomorrow.hours || []) {
    cell(head, String(h.hour).padStart(2, "0"));
    cell(down, h.parks ? num(h.down_kw) : "–");
    cell(up, h.parks ? num(h.up_kw) : "–");
  }
}

// The grid requests given to the fleet: each with what the parks hold and, once measured,
// delivered; each park's answer in the row's tooltip.
function renderRequests(list) {
  const body = document.querySelector("#requests tbody");
  const rows = [];
  for (const r of list) {
    const tr = document.createElement("tr");
    tr.dataset.request = r.id;
    cell(tr, r.id, "id");
    // The hub gives the times in the fleet's zone: shown as given ("07-01 18:00 – 19:00").
    const at = (iso) => String(iso || "").slice(5, 16).replace("T", " ");
    cell(tr, `${at(r.start)} – ${at(r.end).slice(-5)}`, "window");
    cell(tr, num(r.kw, 1));
    cell(tr, num(r.held_kw, 1), "held");
    const parts = r.parks || [];
    cell(tr, `${parts.filter((p) => p.held_kw > 0).length} / ${parts.length}`, "parks");
    const d = r.delivery || {};
    cell(tr, d.parks_reported ? `${num(d.delivered_kwh, 1)} / ${num(d.requested_kwh, 1)}` : "–", "delivered");
    tr.title = parts.map((p) => `${p.park}: ${p.status} ${num(p.held_kw, 1)} / ${num(p.asked_kw, 1)} kW — ${p.note}`).join("\n");
    rows.push(tr);
  }
  if (!rows.length) {
    const tr = document.createElement("tr");
    cell(tr, t("r.none"));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

// Logged out (no cookie, or its token revoked): the login form instead of the view.
class LoggedOut extends Error {}
let loggedIn = false;

async function getJson(path) {
  const r = await fetch(path);
  if (r.status === 401) throw new LoggedOut();
  return r.json();
}

function showLogin() {
  loggedIn = false;
  document.getElementById("login").hidden = false;
  document.getElementById("app").hidden = true;
  document.getElementById("logout").hidden = true;
  set("who", "");
}

async function showApp() {
  const r = await fetch("/api/v1/whoami");
  if (!r.ok) { showLogin(); return; }
  const me = await r.json();
  loggedIn = true;
  document.getElementById("login").hidden = true;
  document.getElementById("app").hidden = false;
  document.getElementById("logout").hidden = false;
  set("who", `${me.label} (${me.role})`);
  refresh();
}

async function refresh() {
  if (!loggedIn) return;
  try {
    const [f, p, ft, fm, rq] = await Promise.all([
      getJson("/api/v1/fleet"),
      getJson("/api/v1/parks"),
      getJson("/api/v1/flexibility?day=today"),
      getJson("/api/v1/flexibility?day=tomorrow"),
      getJson("/api/v1/requests"),
    ]);
    renderTotals(f);
    renderParks(p.parks || []);
    renderFlex(ft, fm);
    renderRequests(rq.requests || []);
  } catch (e) {
    if (e instanceof LoggedOut) { showLogin(); return; }
    const link = document.getElementById("link");
    link.textContent = String(e);
    link.className = "bad";
  }
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("pedf-fleet-lang", lang);
  applyLang();
  refresh();
});
document.getElementById("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = document.getElementById("login-token");
  const r = await fetch("/api/v1/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: input.value.trim() }),
  });
  input.value = "";
  if (r.ok) {
    set("login-error", "");
    showApp();
  } else {
    const b = await r.json().catch(() => ({}));
    set("login-error", r.status === 401 ? t("auth.bad") : b.error || String(r.status));
  }
});
document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/api/v1/session", { method: "DELETE" }).catch(() => {});
  showLogin();
});
applyLang();
showApp();
setInterval(refresh, 2000);
