/* The live wall: reads GET /wall/stream (Server-Sent Events) with fetch(), so the viewer key travels in the
   Authorization header, never in the URL. The key is asked once and kept in this browser's localStorage.
   Everything is drawn with DOM calls and textContent (no innerHTML): alert texts cannot inject markup. */
"use strict";
(function () {
  const KEY = "controlroom.wall.key";
  const LANG = "controlroom.wall.lang";
  const SVG = "http://www.w3.org/2000/svg";
  const INCIDENT_ROWS = 3;  // what fits the tile at 1920x1080; the rest is counted under it
  const LABELS = {
    vi: {
      title: "Trung tâm điều hành quốc gia", feeds_reporting: "luồng đang báo",
      series_reporting: "chuỗi đang báo", provinces_reporting: "tỉnh, thành",
      readings_5m: "bản tin / 5 phút", connecting: "Đang kết nối…", live: "Trực tiếp", stale: "Mất kết nối",
      error: "Lỗi kho dữ liệu", change_key: "Đổi khóa", map: "Cảnh báo theo tỉnh, thành",
      sev_critical: "Nghiêm trọng", sev_warning: "Cảnh báo", sev_info: "Thông tin", sev_none: "Bình thường",
      alerts: "Cảnh báo đang kích hoạt", col_severity: "Mức độ", col_summary: "Nội dung", col_province: "Tỉnh, thành",
      col_since: "Từ lúc", no_alerts: "Không có cảnh báo nào đang kích hoạt.",
      on_time: "Hồ sơ giải quyết đúng hạn (5 phút)", feed_health: "Tình trạng 25 luồng dữ liệu",
      st_reporting: "đang báo", st_degraded: "thiếu một phần", st_silent: "im lặng",
      key_title: "Khóa xem (viewer) cho màn hình này",
      key_help: "Nhập một khóa API có quyền viewer. Khóa được lưu trong trình duyệt này và gửi trong tiêu đề Authorization, không bao giờ trong địa chỉ.",
      key_submit: "Mở bức tường", key_bad: "Khóa không hợp lệ, đã bị thu hồi hoặc không có quyền viewer.",
      toggle: "English", sum_5m: "tổng 5 phút", latest: "giá trị mới nhất", updated: "Cập nhật",
      more: "và {n} cảnh báo khác", resolved_of: "{a} / {b} hồ sơ", no_data: "chưa có hồ sơ", national: "Toàn quốc",
      min: "phút", h: "giờ", ago: "trước",
      incidents: "Sự cố đang mở", col_incident: "Sự cố", col_members: "Cảnh báo", col_age: "Đã mở",
      col_state: "Trạng thái", no_incidents: "Không có sự cố nào đang mở.", legend_incident: "Sự cố",
      st_open: "Mới", st_acknowledged: "Đã tiếp nhận", more_incidents: "và {n} sự cố khác",
      firing_of: "{a} đang báo / {b}",
      back: "← Toàn quốc", p_feeds: "luồng đang báo", p_series: "chuỗi đang báo", p_communes: "xã, phường",
      places: "Ở đâu trong tỉnh (1 giờ qua)", places_of: "{a} / {b} xã, phường có tin", no_places: "chưa có tin nào nêu xã, phường",
      readings: "bản tin",
      reports: "Báo cáo định kỳ", rep_due: "chưa nộp, đến hạn", rep_overdue: "quá hạn chưa nộp",
      rep_due_sub: "{a} / {b} đã nộp · hạn {d}", rep_none_due: "không có kỳ nào đến hạn",
      rep_over_sub: "{a} nộp trễ · {f} biểu mẫu",
      indicators: "Chỉ tiêu: thực hiện so với kế hoạch", of_plan: "{p} % KH", no_plan: "chưa có KH",
      projection: "→ {p} %", more_indicators: "và {n} dòng khác",
      agencies_link: "Cơ quan", agencies_title: "Chất lượng cung cấp dữ liệu theo cơ quan",
      agencies_sub: "điểm hôm nay, 7 ngày qua · {a} cơ quan được chấm · {b} dưới 80", worst: "kém nhất",
      no_score: "chưa chấm", center_score: "Điểm cung cấp dữ liệu của trung tâm hôm nay",
    },
    en: {
      title: "National operations center", feeds_reporting: "feeds reporting", series_reporting: "series reporting",
      provinces_reporting: "provinces with data", readings_5m: "readings / 5 min", connecting: "Connecting…",
      live: "Live", stale: "Connection lost", error: "Warehouse error", change_key: "Change key",
      map: "Alerts by province", sev_critical: "Critical", sev_warning: "Warning", sev_info: "Info", sev_none: "Normal",
      alerts: "Firing alerts", col_severity: "Severity", col_summary: "Summary", col_province: "Province",
      col_since: "Since", no_alerts: "No alert is firing.", on_time: "Dossiers resolved on time (5 min)",
      feed_health: "Health of the 25 feeds", st_reporting: "reporting", st_degraded: "degraded", st_silent: "silent",
      key_title: "Viewer key for this screen",
      key_help: "Enter an API key with the viewer role. It is kept in this browser and sent in the Authorization header, never in the address.",
      key_submit: "Open the wall", key_bad: "This key is invalid, revoked, or lacks the viewer role.",
      toggle: "Tiếng Việt", sum_5m: "5-min total", latest: "latest value", updated: "Updated",
      more: "and {n} more alerts", resolved_of: "{a} / {b} dossiers", no_data: "no dossier yet", national: "National",
      min: "min", h: "h", ago: "ago",
      incidents: "Open incidents", col_incident: "Incident", col_members: "Alerts", col_age: "Open for",
      col_state: "State", no_incidents: "No incident is open.", legend_incident: "Incident",
      st_open: "Open", st_acknowledged: "Acknowledged", more_incidents: "and {n} more incidents",
      firing_of: "{a} firing / {b}",
      back: "← National", p_feeds: "feeds reporting", p_series: "series reporting", p_communes: "communes and wards",
      places: "Where in the province (last hour)", places_of: "{a} / {b} communes reporting", no_places: "no reading named a commune yet",
      readings: "readings",
      reports: "Periodic reports", rep_due: "missing, due soon", rep_overdue: "overdue, missing",
      rep_due_sub: "{a} / {b} submitted · due {d}", rep_none_due: "no period due now",
      rep_over_sub: "{a} submitted late · {f} forms",
      indicators: "Indicators: actual against plan", of_plan: "{p} % of plan", no_plan: "no plan",
      projection: "→ {p} %", more_indicators: "and {n} more rows",
      agencies_link: "Agencies", agencies_title: "Data delivery quality by agency",
      agencies_sub: "today's score, last 7 days · {a} bodies scored · {b} below 80", worst: "worst",
      no_score: "not scored", center_score: "Data delivery score of its center today",
    },
  };
  // /wall/province/79: the same page shows one province (its feeds, alerts, communes) from its own stream
  const PROVINCE = (location.pathname.match(/^\/wall\/province\/(\d{2})\/?$/) || [])[1] || null;
  // /wall/agencies: the connected bodies' quality scores, from the stream's agencies view
  const AGENCIES = /^\/wall\/agencies\/?$/.test(location.pathname);
  let lang = localStorage.getItem(LANG) === "en" ? "en" : "vi";
  let snap = null;
  let lastAt = 0;
  let controller = null;
  let retryTimer = null;
  const $ = (id) => document.getElementById(id);
  const t = (k) => LABELS[lang][k] || k;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function group(intPart, sep) {
    return intPart.replace(/\B(?=(\d{3})+(?!\d))/g, sep);
  }

  // Numbers the way each language writes them: vi 1.234,5 ; en 1,234.5. Large amounts are abbreviated.
  function fmt(v, decimals) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const [th, dec] = lang === "vi" ? [".", ","] : [",", "."];
    let suffix = "";
    let x = v;
    const big = [[1e12, " nghìn tỷ", " tn"], [1e9, " tỷ", " bn"], [1e6, " triệu", " M"]];
    for (const [n, vi, en] of big) {
      if (Math.abs(v) >= n) { x = v / n; suffix = lang === "vi" ? vi : en; decimals = 2; break; }
    }
    if (decimals === undefined) decimals = Number.isInteger(x) ? 0 : (Math.abs(x) >= 100 ? 0 : 2);
    const s = Math.abs(x).toFixed(decimals);
    const [i, d] = s.split(".");
    return (x < 0 ? "−" : "") + group(i, th) + (d ? dec + d : "") + suffix;
  }

  function since(iso) {
    const d = new Date(iso);
    const mins = Math.max(0, Math.round((Date.now() - d.getTime()) / 60000));
    const hhmm = d.toLocaleTimeString(lang === "vi" ? "vi-VN" : "en-GB", { hour: "2-digit", minute: "2-digit" });
    const rel = mins < 60 ? mins + " " + t("min") : Math.floor(mins / 60) + " " + t("h") + " " + (mins % 60) + " " + t("min");
    return hhmm + " (" + rel + " " + t("ago") + ")";
  }

  function age(iso) {
    const mins = Math.max(0, Math.floor((Date.now() - new Date(iso).getTime()) / 60000));
    return mins < 60 ? mins + " " + t("min") : Math.floor(mins / 60) + " " + t("h") + " " + (mins % 60) + " " + t("min");
  }

  function applyLabels() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach((e) => { e.textContent = t(e.dataset.i18n); });
    $("lang").textContent = t("toggle");
    document.title = t("title") + " — Control Room";
  }

  function setStatus(kind) {
    $("status").dataset.i18n = kind;
    $("status").textContent = t(kind);
    $("live-dot").className = "dot " + (kind === "live" ? "live" : kind === "connecting" ? "" : "stale");
  }

  // A tile: a title line, a second line, the headline figure, and the last hour as a sparkline with the trend.
  function tileEl(tile, title, subtitle) {
    const e = el("div", "tile");
    e.dataset.feed = tile.feed;
    e.dataset.value = JSON.stringify(tile.value);
    e.dataset.trend = JSON.stringify(tile.trend.map((p) => p[1]));
    e.append(el("div", "cat", title), el("div", "feed", subtitle), el("div", "value", fmt(tile.value)),
      el("div", "unit", tile.unit + " · " + t(tile.basis)));
    const foot = el("div", "foot");
    foot.append(spark(tile.trend.map((p) => p[1])));
    const d = tile.trend_delta_pct;
    const arrow = d === null ? "" : d > 1 ? "▲ " : d < -1 ? "▼ " : "► ";
    foot.append(el("span", "delta " + (d === null ? "flat" : d > 1 ? "up" : d < -1 ? "down" : "flat"),
      d === null ? "" : arrow + (d > 0 ? "+" : "") + fmt(d, 1) + " %"));
    e.append(foot);
    return e;
  }

  function renderTiles(s) {
    $("tiles").replaceChildren(...s.tiles.map((tile) => {
      const e = tileEl(tile, lang === "vi" ? tile.name_vi : tile.name_en,
        lang === "vi" ? tile.feed_name_vi : tile.feed_name_en);
      e.dataset.category = tile.id;
      return e;
    }));
  }

  // The last hour, one slot per minute (null: no window that minute, a gap in the line). Runs of minutes are
  // polylines; a lone minute is a dot. data-points: how many minutes are drawn.
  function spark(values) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 150 40");  // stretched to the CSS size
    svg.setAttribute("preserveAspectRatio", "none");
    const known = values.filter((v) => v !== null);
    svg.dataset.points = String(known.length);
    if (!known.length) return svg;
    const lo = Math.min(...known), hi = Math.max(...known), span = hi - lo || 1;
    const x = (i) => (values.length > 1 ? i * 150 / (values.length - 1) : 75).toFixed(1);
    const y = (v) => (37 - (v - lo) / span * 34).toFixed(1);
    let run = [];
    const flush = () => {
      if (run.length === 1) {
        const dot = document.createElementNS(SVG, "circle");
        dot.setAttribute("cx", run[0][0]);
        dot.setAttribute("cy", run[0][1]);
        dot.setAttribute("r", "1.8");
        svg.append(dot);
      } else if (run.length > 1) {
        const line = document.createElementNS(SVG, "polyline");
        line.setAttribute("points", run.map((p) => p.join(",")).join(" "));
        svg.append(line);
      }
      run = [];
    };
    values.forEach((v, i) => { if (v === null) flush(); else run.push([x(i), y(v)]); });
    flush();
    return svg;
  }

  function renderMap(s) {
    const svg = $("map");
    svg.setAttribute("viewBox", "0 0 " + s.map.width + " " + s.map.height);
    svg.replaceChildren();
    const order = { critical: 3, warning: 2, info: 1 };
    const provinces = [...s.provinces].sort((a, b) => (order[a.severity] || 0) - (order[b.severity] || 0));
    for (const p of provinces) {
      const link = document.createElementNS(SVG, "a");  // a click opens the province's page
      link.setAttribute("href", "/wall/province/" + p.code);
      link.dataset.code = p.code;
      const c = document.createElementNS(SVG, "circle");
      c.setAttribute("cx", p.x);
      c.setAttribute("cy", p.y);
      c.setAttribute("r", p.severity ? 14 : 10);
      c.setAttribute("class", "province sev-" + (p.severity || "none"));
      c.dataset.code = p.code;
      c.dataset.severity = p.severity || "none";
      c.dataset.incident = p.incidents.length ? "1" : "0";
      const title = document.createElementNS(SVG, "title");
      title.textContent = (lang === "vi" ? p.name_vi : p.name_en) + (p.firing ? " · " + p.firing : "");
      c.append(title);
      link.append(c);
      svg.append(link);
    }
    for (const p of provinces.filter((q) => q.incidents.length)) {  // an open incident: a ring around it
      const ring = document.createElementNS(SVG, "circle");
      ring.setAttribute("cx", p.x);
      ring.setAttribute("cy", p.y);
      ring.setAttribute("r", 21);
      ring.setAttribute("class", "incident-ring");
      ring.dataset.code = p.code;
      svg.append(ring);
    }
    for (const p of provinces.filter((q) => q.severity || q.incidents.length)) {  // names where something is up
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", p.x + 15);
      label.setAttribute("y", p.y + 5);
      label.textContent = lang === "vi" ? p.name_vi.replace(/^(Thành phố|Tỉnh) /, "") : p.name_en;
      svg.append(label);
    }
  }

  function renderAlerts(s) {
    const body = document.querySelector("#alerts tbody");
    body.replaceChildren();
    for (const a of s.alerts) {
      const tr = el("tr", "alert");
      tr.dataset.alertId = a.alert_id;
      tr.dataset.severity = a.severity;
      tr.dataset.province = a.province;
      const sev = el("td", "sev");
      sev.append(el("span", "sev-" + a.severity, t("sev_" + a.severity)));
      const summary = el("td", "summary", lang === "vi" ? a.summary_vi : a.summary_en);
      if (a.inhibited_by) {  // muted by another firing alert: shown, not notified; say by what
        tr.classList.add("inhibited");
        summary.append(el("div", "inhibited-note", lang === "vi" ? a.inhibited_vi : a.inhibited_en));
      }
      tr.append(sev, summary,
        el("td", "prov", lang === "vi" ? a.province_vi : a.province_en), el("td", "since", since(a.since)));
      body.append(tr);
    }
    $("alert-count").textContent = String(s.alerts_firing);
    $("no-alerts").hidden = s.alerts_firing > 0;
    const more = s.alerts_firing - s.alerts.length;
    $("more-alerts").hidden = more <= 0;
    $("more-alerts").textContent = more > 0 ? t("more").replace("{n}", fmt(more)) : "";
  }

  function renderIncidents(s) {
    const body = document.querySelector("#incidents tbody");
    body.replaceChildren();
    for (const i of s.incidents.slice(0, INCIDENT_ROWS)) {
      const tr = el("tr", "incident");
      tr.dataset.incidentId = i.incident_id;
      tr.dataset.type = i.type;
      tr.dataset.province = i.province;
      tr.dataset.state = i.state;
      tr.dataset.alerts = String(i.alerts);
      const name = el("td", "inc");
      name.append(el("i", "sev-" + i.severity), document.createTextNode(lang === "vi" ? i.type_vi : i.type_en));
      name.title = lang === "vi" ? i.title_vi : i.title_en;
      const state = el("td", "state");
      state.append(el("span", "st-" + i.state, t("st_" + i.state)));
      tr.append(name, el("td", "prov", lang === "vi" ? i.province_vi : i.province_en),
        el("td", "members", t("firing_of").replace("{a}", fmt(i.alerts_firing)).replace("{b}", fmt(i.alerts))),
        el("td", "age", age(i.opened_at)), state);
      body.append(tr);
    }
    $("incident-count").textContent = String(s.incidents_active);
    $("no-incidents").hidden = s.incidents_active > 0;
    const more = s.incidents_active - Math.min(s.incidents.length, INCIDENT_ROWS);
    $("more-incidents").hidden = more <= 0;
    $("more-incidents").textContent = more > 0 ? t("more_incidents").replace("{n}", fmt(more)) : "";
  }

  // A province's page: its feeds as tiles, its alerts and incidents, and where inside it (per commune).
  function renderProvince(s) {
    const p = s.province;
    $("p-name").textContent = lang === "vi" ? p.name_vi : p.name_en;
    $("p-name").dataset.code = p.code;
    $("p-sub").textContent = s.totals.feeds_reporting + " / " + s.totals.feeds + " " + t("p_feeds") + " · " +
      fmt(s.totals.series_reporting) + " / " + fmt(s.totals.series_expected) + " " + t("p_series") + " · " +
      fmt(p.communes) + " " + t("p_communes");
    $("p-tiles").replaceChildren(...s.tiles.map((tile) => {
      const e = tileEl(tile, lang === "vi" ? tile.feed_name_vi : tile.feed_name_en,
        fmt(tile.series_reporting) + " / " + fmt(tile.series_expected) + " · " + t("st_" + tile.status));
      e.classList.add("st-" + tile.status);
      e.dataset.status = tile.status;
      return e;
    }));
    renderAlerts(s);
    renderIncidents(s);
    const center = s.agencies[0];
    $("p-agency").dataset.score = JSON.stringify(center ? center.score : null);
    $("p-agency").textContent = center ? "· " + t("center_score") + ": " + (center.score === null ? t("no_score")
      : fmt(center.score, 0)) : "";
    const box = $("p-places");
    box.replaceChildren();
    for (const f of s.places) {
      const block = el("div", "place-feed");
      block.dataset.feed = f.feed;
      const head = el("h3", null, lang === "vi" ? f.name_vi : f.name_en);
      head.append(el("span", "sub", " " + t("places_of").replace("{a}", fmt(f.communes_reporting))
        .replace("{b}", fmt(f.communes_in_province))));
      block.append(head);
      if (!f.communes.length) block.append(el("p", "empty", t("no_places")));
      const top = Math.max(1, ...f.communes.map((c) => c.value));
      for (const c of f.communes) {
        const row = el("div", "place");
        row.dataset.code = c.code;
        row.dataset.value = JSON.stringify(c.value);
        row.dataset.readings = String(c.readings);
        const bar = el("i", "bar");
        bar.style.width = Math.max(2, Math.round(100 * c.value / top)) + "%";
        row.append(el("span", "name", c.name), el("span", "track"), el("b", null, fmt(c.value) + " " + f.unit));
        row.querySelector(".track").append(bar);
        row.title = fmt(c.readings) + " " + t("readings");
        block.append(row);
      }
      box.append(block);
    }
  }

  // A body's card: its name, its worst contract today, its score today and its week as a sparkline.
  function agencyEl(a) {
    const e = el("div", "agency " + (a.score === null ? "none" : a.score >= 90 ? "good" : a.score >= 70 ? "fair" : "poor"));
    e.dataset.agency = a.id;
    e.dataset.score = JSON.stringify(a.score);
    e.dataset.trend = JSON.stringify(a.trend.map((p) => p[1]));
    e.dataset.worst = a.worst_feed || "";
    e.append(el("span", "name", lang === "vi" ? a.label_vi : a.label_en),
      el("span", "score", a.score === null ? "–" : fmt(a.score, 0)), spark(a.trend.map((p) => p[1])),
      el("span", "worst", a.worst_feed ? t("worst") + ": " + (lang === "vi" ? a.worst_feed_vi : a.worst_feed_en) +
        " (" + fmt(a.worst_quality, 0) + ")" : t("no_score")));
    e.title = lang === "vi" ? a.name_vi : a.name_en;
    return e;
  }

  function renderAgencies(s) {
    $("a-sub").textContent = s.day + " · " + t("agencies_sub").replace("{a}", fmt(s.judged)).replace("{b}", fmt(s.below_80));
    $("agencies").replaceChildren(...s.agencies.map(agencyEl));
  }

  function renderSide(s) {
    const ps = s.public_services;
    const o = $("ontime");
    o.dataset.value = JSON.stringify(ps.on_time_rate_pct);
    o.textContent = ps.on_time_rate_pct === null ? "–" : fmt(ps.on_time_rate_pct, 1) + " %";
    o.className = ps.on_time_rate_pct !== null && ps.on_time_rate_pct < 90 ? "big bad" : "big";
    $("ontime-sub").textContent = ps.resolved_5m
      ? t("resolved_of").replace("{a}", fmt(ps.on_time_5m)).replace("{b}", fmt(ps.resolved_5m)) : t("no_data");
    for (const k of ["reporting", "degraded", "silent"]) $("h-" + k).textContent = String(s.health[k]);
    const box = $("feeds");
    box.replaceChildren();
    for (const f of s.feeds) {
      const c = el("div", "feed-cell st-" + f.status);
      c.append(el("span", "name", lang === "vi" ? f.name_vi : f.name_en));
      c.dataset.feed = f.id;
      c.dataset.status = f.status;
      c.title = t("st_" + f.status);
      c.append(el("b", null, fmt(f.series_reporting) + " / " + fmt(f.series_expected)));
      box.append(c);
    }
  }

  const INDICATOR_ROWS = 7;  // what fits the panel; the rest is counted under it

  // Reports due / overdue (GET /reports/compliance's counts, over every form) and the headline indicators
  // against their yearly plan (GET /indicators/{id}/plan's figures), refreshed twice a minute by the API.
  function renderPeriodic(s) {
    const r = s.reports;
    const panel = $("reports-panel");
    if (r) {
      panel.dataset.due = JSON.stringify(r.due);
      panel.dataset.overdue = JSON.stringify(r.overdue);
      const day = (iso) => new Date(iso).toLocaleDateString(lang === "vi" ? "vi-VN" : "en-GB",
        { day: "2-digit", month: "2-digit", timeZone: "Asia/Ho_Chi_Minh" });
      $("rep-due").querySelector(".n").textContent = r.due.forms ? fmt(r.due.missing) : "–";
      // the deadline is the end of its day: the day shown is the one before that instant
      $("rep-due").querySelector(".sub").textContent = r.due.forms
        ? t("rep_due_sub").replace("{a}", fmt(r.due.submitted)).replace("{b}", fmt(r.due.expected))
          .replace("{d}", day(new Date(new Date(r.due.next_deadline).getTime() - 1).toISOString()))
        : t("rep_none_due");
      const over = $("rep-overdue").querySelector(".n");
      over.textContent = fmt(r.overdue.missing);
      over.className = r.overdue.missing > 0 ? "n bad" : "n";
      $("rep-overdue").querySelector(".sub").textContent = t("rep_over_sub")
        .replace("{a}", fmt(r.overdue.submitted - r.overdue.on_time)).replace("{f}", fmt(r.overdue.forms));
    }
    const rows = s.indicators || [];
    $("ind-year").textContent = rows.length ? String(rows[0].year) : "";
    const body = document.querySelector("#indicators tbody");
    body.replaceChildren();
    for (const i of rows.slice(0, INDICATOR_ROWS)) {
      const tr = el("tr", "indicator");
      tr.dataset.indicator = i.indicator;
      tr.dataset.province = i.province;
      for (const k of ["actual_to_date", "target", "actual_pct_of_plan", "projection_pct_of_plan"]) {
        tr.dataset[k.replace(/_([a-z])/g, (_m, c) => c.toUpperCase())] = JSON.stringify(i[k]);
      }
      const name = el("td", "name", (lang === "vi" ? i.name_vi : i.name_en) +
        (i.province !== "00" ? " · " + i.province : ""));
      name.title = name.textContent;
      const bar = el("td", "bar");
      const track = el("span", "track");
      if (i.actual_pct_of_plan !== null) {
        // a summed indicator on plan has reached the share of the year elapsed (the white mark)
        const fill = el("i", i.aggregation === "sum" && i.actual_pct_of_plan < i.year_elapsed_pct ? "behind" : null);
        fill.style.width = Math.min(100, Math.max(1, i.actual_pct_of_plan)) + "%";
        track.append(fill);
        if (i.aggregation === "sum") {
          const mark = el("b");
          mark.style.left = Math.min(100, i.year_elapsed_pct) + "%";
          track.append(mark);
        }
      }
      if (i.target === null) {  // no plan to measure against: the figure itself
        bar.classList.add("actual");
        bar.textContent = fmt(i.actual_to_date) + " " + i.unit;
      } else {
        bar.append(track);
      }
      const pct = i.actual_pct_of_plan === null ? (i.target === null ? t("no_plan") : "–")
        : t("of_plan").replace("{p}", fmt(i.actual_pct_of_plan, 0));
      tr.append(name, bar, el("td", "pct", pct), el("td", "proj", i.projection_pct_of_plan === null ? ""
        : t("projection").replace("{p}", fmt(i.projection_pct_of_plan, 0))));
      body.append(tr);
    }
    const more = rows.length - Math.min(rows.length, INDICATOR_ROWS);
    $("more-indicators").hidden = more <= 0;
    $("more-indicators").textContent = more > 0 ? t("more_indicators").replace("{n}", fmt(more)) : "";
  }

  function renderTotals(s) {
    const x = s.totals;
    $("t-feeds").textContent = x.feeds_reporting + " / " + x.feeds;
    $("t-series").textContent = fmt(x.series_reporting) + " / " + fmt(x.series_expected);
    $("t-provinces").textContent = x.provinces_reporting + " / " + x.provinces;
    $("t-readings").textContent = fmt(x.readings_5m);
    $("t-readings").dataset.value = String(x.readings_5m);
  }

  function render() {
    applyLabels();
    if (!snap) return;
    if (PROVINCE) {
      renderProvince(snap);
    } else if (AGENCIES) {
      renderAgencies(snap);
    } else {
      renderTotals(snap);
      renderTiles(snap);
      renderMap(snap);
      renderIncidents(snap);
      renderAlerts(snap);
      renderSide(snap);
      renderPeriodic(snap);
    }
    $("updated").textContent = t("updated") + " " + new Date(snap.generated_at).toLocaleTimeString(lang === "vi" ? "vi-VN" : "en-GB");
    document.body.dataset.generatedAt = snap.generated_at;
  }

  function askKey(message) {
    $("key-error").textContent = message || "";
    $("key-dialog").hidden = false;
    $("key-input").focus();
  }

  function handle(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (!data.length) return;
    const payload = JSON.parse(data.join("\n"));
    if (event === (PROVINCE ? "province" : AGENCIES ? "agencies" : "wall")) {
      snap = payload;
      lastAt = Date.now();
      setStatus("live");
      render();
    } else if (event === "wall-error") {
      setStatus("error");
    } else if (event === "auth") {
      localStorage.removeItem(KEY);
      if (controller) controller.abort();
      askKey(t("key_bad"));
    }
  }

  function retry() {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, 3000);
  }

  async function connect() {
    const key = localStorage.getItem(KEY);
    if (!key) { askKey(""); return; }
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    setStatus(snap ? "stale" : "connecting");
    let resp;
    try {
      const url = PROVINCE ? "/wall/stream?province=" + PROVINCE : AGENCIES ? "/wall/stream?view=agencies" : "/wall/stream";
      resp = await fetch(url, { headers: { Authorization: "Bearer " + key, Accept: "text/event-stream" },
        cache: "no-store", signal: mine.signal });
    } catch (e) {
      if (!mine.signal.aborted) { setStatus("stale"); retry(); }
      return;
    }
    if (resp.status === 401 || resp.status === 403) {
      localStorage.removeItem(KEY);
      askKey(t("key_bad"));
      return;
    }
    if (!resp.ok || !resp.body) { setStatus("stale"); retry(); return; }
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          handle(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) {
      if (mine.signal.aborted) return;
    }
    if (!mine.signal.aborted) { setStatus("stale"); retry(); }
  }

  // A stream that went quiet (no snapshot and no heartbeat got through): say so, and reconnect.
  setInterval(() => {
    if (snap && Date.now() - lastAt > Math.max(30000, snap.refresh_s * 4000)) { setStatus("stale"); connect(); }
  }, 5000);

  document.addEventListener("DOMContentLoaded", () => {
    if (PROVINCE) {
      document.body.classList.add("province");
      $("province-view").hidden = false;
      $("p-center").append($("incidents-panel"), $("alerts-panel"));  // the same panels, the province's rows
    }
    if (AGENCIES) {
      document.body.classList.add("agencies");
      $("agencies-view").hidden = false;
    }
    $("lang").addEventListener("click", () => {
      lang = lang === "vi" ? "en" : "vi";
      localStorage.setItem(LANG, lang);
      render();
    });
    $("forget").addEventListener("click", () => {
      localStorage.removeItem(KEY);
      if (controller) controller.abort();
      askKey("");
    });
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const key = $("key-input").value.trim();
      if (!key) return;
      localStorage.setItem(KEY, key);
      $("key-input").value = "";
      $("key-dialog").hidden = true;
      connect();
    });
    applyLabels();
    connect();
  });
})();
