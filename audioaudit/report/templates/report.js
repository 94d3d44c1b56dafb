(function () {
  "use strict";
  // Cards are built with textContent only: names from users never become markup.
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const cards = data.cards;
  cards.forEach((c, i) => { c.index = i; });
  const $ = (id) => document.getElementById(id);
  const state = { flag: "all", cls: "", run: "", sort: data.defaultSort, q: "", page: 0, size: data.pageSize };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function num(v, d) { return (v === null || v === undefined) ? "\u2014" : Number(v).toFixed(d); }
  function byNum(key, dir) {
    return (a, b) => {
      const x = a[key], y = b[key];
      if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;
      if (y === null || y === undefined) return -1;
      return dir * (x - y);
    };
  }
  const sorters = {
    "score-desc": byNum("score", -1), "score-asc": byNum("score", 1), "sim-desc": byNum("sim", -1),
    "ratio-asc": byNum("ratio", 1), "size-desc": byNum("size", -1),
    "name": (a, b) => a.title.localeCompare(b.title),
  };

  function dl(cls, pairs) {
    const d = el("dl", cls);
    for (const [k, v] of pairs) { d.append(el("dt", null, k), el("dd", null, v)); }
    return d;
  }

  function player(clip, fig) {
    const spec = el("div", "spec");
    const img = el("img");
    img.loading = "lazy"; img.width = data.specWidth; img.height = data.specHeight; img.alt = "spectrogram"; img.src = clip.img;
    const head = el("div", "playhead");
    spec.append(img);
    if (clip.hl) {  // the matched span: the rest of the excerpt is shaded, its edges drawn
      const pct = (f) => (100 * f).toFixed(2) + "%";
      const left = el("div", "shade"), right = el("div", "shade"), hl = el("div", "hl");
      left.style.left = "0"; left.style.width = pct(clip.hl[0]);
      right.style.left = pct(clip.hl[1]); right.style.right = "0";
      hl.style.left = pct(clip.hl[0]); hl.style.width = pct(clip.hl[1] - clip.hl[0]);
      spec.append(left, right, hl);
    }
    spec.append(head);
    const audio = el("audio");
    audio.controls = true; audio.preload = "metadata"; audio.src = clip.audio;
    audio.addEventListener("timeupdate", () => {
      if (audio.duration > 0) head.style.left = (100 * audio.currentTime / audio.duration) + "%";
    });
    spec.addEventListener("click", (ev) => {
      const r = spec.getBoundingClientRect();
      if (audio.duration > 0) { audio.currentTime = audio.duration * (ev.clientX - r.left) / r.width; audio.play(); }
    });
    const w = clip.win;
    const times = el("div", "times", "excerpt " + num(w[0], 1) + "\u2013" + num(w[1], 1) + " s of " + num(clip.total, 1) + " s");
    if (clip.span) {
      times.append(document.createTextNode(" \u00b7 match " + num(clip.span[0], 2) + "\u2013" + num(clip.span[1], 2) + " s"));
      const b = el("button", null, "\u25b6 match");
      b.type = "button";
      b.addEventListener("click", () => { audio.currentTime = Math.max(0, clip.span[0] - w[0]); audio.play(); });
      times.append(b);
    }
    fig.append(spec, audio, times);
  }

  function clipNode(clip) {
    const fig = el("figure", "clip");
    const cap = el("figcaption");
    cap.append(el("span", "role", clip.role), el("span", "path", clip.name));
    fig.append(cap);
    if (clip.audio) player(clip, fig); else fig.append(el("div", "missing", "no audio: " + (clip.err || "unknown")));
    if (clip.info && clip.info.length) fig.append(dl("info", clip.info));
    return fig;
  }

  function cardNode(c, rank) {
    const art = el("article", "card" + (c.flag ? " flagged" : ""));
    art.dataset.card = String(c.index); art.dataset.cls = c.cls; art.dataset.flag = c.flag ? "1" : "0"; art.dataset.run = String(c.run);
    const head = el("div", "card-head");
    head.append(el("span", "rank", "#" + rank));
    if (c.flag) head.append(el("span", "badge flag", data.flagWord));
    for (const b of (c.badges || [])) head.append(el("span", "badge flag", b));
    head.append(el("span", "title", c.title));
    if (c.cls) head.append(el("span", "badge cls", c.cls));
    if (data.runs.length > 1) head.append(el("span", "badge run", data.runs[c.run]));
    if (c.scoreText) head.append(el("span", "scores", c.scoreText));
    else head.append(el("span", "scores", "score " + num(c.score, 3) + " \u00b7 similarity " + num(c.sim, 3) + " \u00b7 NN ratio " + num(c.ratio, 3)));
    art.append(head);
    if (c.meta && c.meta.length) art.append(dl("meta", c.meta));
    const clips = el("div", "clips");
    for (const clip of c.clips) clips.append(clipNode(clip));
    art.append(clips);
    return art;
  }

  function visible() {
    const q = state.q.toLowerCase();
    return cards.filter((c) =>
      (state.flag !== "flagged" || c.flag) && (state.flag !== "unflagged" || !c.flag) &&
      (state.cls === "" || c.cls === state.cls) && (state.run === "" || String(c.run) === state.run) &&
      (q === "" || c.title.toLowerCase().includes(q)));
  }

  function render() {
    const list = visible().sort(sorters[state.sort] || sorters.name);
    const pages = Math.max(1, Math.ceil(list.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    const from = state.page * state.size;
    const box = $("cards");
    for (const a of box.querySelectorAll("audio")) a.pause();
    const nodes = list.slice(from, from + state.size).map((c, i) => cardNode(c, from + i + 1));
    box.replaceChildren(...nodes);
    if (!nodes.length) box.append(el("div", "empty", "No clips match these filters."));
    $("page-info").textContent = "page " + (state.page + 1) + " / " + pages + " \u00b7 " + list.length + " of " + cards.length + " " + data.unit;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    box.dataset.shown = String(nodes.length);
    box.dataset.matching = String(list.length);
  }

  function bind(id, key, isNum) {
    const e = $(id);
    if (!e) return;
    e.value = String(state[key]);
    e.addEventListener(e.tagName === "INPUT" ? "input" : "change", () => {
      state[key] = isNum ? Number(e.value) : e.value; state.page = 0; render();
    });
  }
  bind("f-flag", "flag"); bind("f-cls", "cls"); bind("f-run", "run"); bind("f-sort", "sort");
  bind("f-search", "q"); bind("f-size", "size", true);
  $("prev").addEventListener("click", () => { state.page -= 1; render(); window.scrollTo(0, $("cards").offsetTop - 60); });
  $("next").addEventListener("click", () => { state.page += 1; render(); window.scrollTo(0, $("cards").offsetTop - 60); });
  render();
  document.body.dataset.ready = "1";
})();
