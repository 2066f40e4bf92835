"""`selfinstruct report`: one self-contained HTML page (no CDN, no network; charts are inline SVG).

Every piece of generated text goes through `html.escape`: instructions are data, never markup.
"""

from __future__ import annotations

import datetime
import json
from html import escape
from typing import Any

from selfinstruct.report.diversity import top_verbs_and_nouns, verb_noun_pairs
from selfinstruct.report.stats import Funnel, RunStats, compute, steering
from selfinstruct.store import Store

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1"]
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:top}
th{background:#f5f5f5;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{border:1px solid #eee;padding:.5rem}
.kept{color:#2e7d32}.rejected,.dropped{color:#c62828}.muted{color:#777}
#search{width:100%;padding:.4rem;font-size:1rem;margin:.5rem 0}
#rows td{max-width:420px;white-space:pre-wrap;word-break:break-word}
"""
SCRIPT = """
const box = document.getElementById('search');
const rows = Array.from(document.querySelectorAll('#rows tbody tr'));
const shown = document.getElementById('shown');
function filter(query) {
  const q = query.toLowerCase();
  let n = 0;
  for (const row of rows) {
    const hit = row.textContent.toLowerCase().includes(q);
    row.style.display = hit ? '' : 'none';
    n += hit;
  }
  shown.textContent = n;
}
box.addEventListener('input', () => filter(box.value));
// report.html#q=words opens with that search applied: a link can point at a slice of the data.
const linked = location.hash.match(/^#q=(.*)$/);
if (linked) { box.value = decodeURIComponent(linked[1]); filter(box.value); }
"""


def _fmt(value: float | int) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def histogram(values: list[float], title: str, bins: int = 20, lo: float | None = None, hi: float | None = None) -> str:
    """An inline SVG histogram."""
    width, height, pad = 320, 180, 30
    if not values:
        return f'<div class="chart"><b>{escape(title)}</b><p class="muted">no data</p></div>'
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    if hi <= lo:
        hi = lo + 1
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))] += 1
    top = max(counts)
    bar = (width - pad) / bins
    rects = "".join(
        f'<rect x="{pad + i * bar:.1f}" y="{height - pad - c / top * (height - 2 * pad):.1f}" width="{bar - 1:.1f}" '
        f'height="{c / top * (height - 2 * pad):.1f}" fill="{PALETTE[0]}"><title>{c}</title></rect>'
        for i, c in enumerate(counts)
    )
    axis = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width}" y2="{height - pad}" stroke="#999"/>'
        f'<text x="{pad}" y="{height - 12}" font-size="10">{lo:g}</text>'
        f'<text x="{width - 5}" y="{height - 12}" font-size="10" text-anchor="end">{hi:g}</text>'
        f'<text x="2" y="{pad}" font-size="10">{top}</text>'
    )
    return (
        f'<div class="chart"><b>{escape(title)}</b><br><svg class="histogram" width="{width}" '
        f'height="{height}" role="img">{rects}{axis}</svg></div>'
    )


def verb_noun_chart(top: list[tuple[str, int, list[tuple[str, int]]]]) -> str:
    """Nested bars: one row per root verb, split into its most common direct-object nouns."""
    if not top:
        return '<p class="muted">No verb-noun pairs were found.</p>'
    row, label, width = 22, 90, 700
    most = top[0][1]
    parts = []
    for k, (verb, count, nouns) in enumerate(top):
        y = k * row
        parts.append(f'<text x="{label - 6}" y="{y + 15}" font-size="12" text-anchor="end">{escape(verb)}</text>')
        x = label
        scale = (width - label - 60) / most
        for j, (noun, n) in enumerate(nouns):
            w = n * scale
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row - 4}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(verb)} {escape(noun)}: {n}</title></rect>'
            )
            if w > 40:
                parts.append(f'<text x="{x + 3:.1f}" y="{y + 15}" font-size="11" fill="#fff">{escape(noun)}</text>')
            x += w
        rest = count - sum(n for _, n in nouns)
        if rest:
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 2}" width="{rest * scale:.1f}" height="{row - 4}" fill="#ccc">'
                f"<title>{escape(verb)}, other objects: {rest}</title></rect>"
            )
            x += rest * scale
        parts.append(f'<text x="{x + 4:.1f}" y="{y + 15}" font-size="11">{count}</text>')
    return f'<svg id="verb-noun" width="{width}" height="{len(top) * row}" role="img">{"".join(parts)}</svg>'


def _funnel_table(funnel: Funnel, unit: str, kept_word: str) -> str:
    rows = [f"<tr><td>{unit} parsed</td><td class='n'>{funnel.total:,}</td><td></td></tr>"]
    for reason, count in funnel.dropped.items():
        examples = "<br>".join(f"“{escape(e[:160])}”" for e in funnel.examples.get(reason, []))
        rows.append(
            f"<tr><td>dropped: {escape(reason)}</td><td class='n'>{count:,}</td><td class='muted'>{examples}</td></tr>"
        )
    rows.append(f"<tr><th>{kept_word}</th><th class='n'>{funnel.kept:,}</th><th></th></tr>")
    return f"<table class='funnel'><tr><th>step</th><th>count</th><th>examples</th></tr>{''.join(rows)}</table>"


def _requests_table(stats: RunStats) -> str:
    head = (
        "<tr><th>stage</th><th>requests</th><th>ok</th><th>failed</th><th>attempts</th><th>tokens in</th>"
        "<th>tokens out</th><th>latency p50 / p90 / p99 (s)</th><th>answers/s</th><th>cost</th></tr>"
    )
    body = "".join(
        f"<tr><td>{escape(r['stage'])}</td><td class='n'>{r['requests']:,}</td><td class='n'>{r['ok']:,}</td>"
        f"<td class='n'>{r['failed']:,}</td><td class='n'>{r['attempts']:,}</td>"
        f"<td class='n'>{r['prompt_tokens']:,}</td><td class='n'>{r['completion_tokens']:,}</td>"
        f"<td class='n'>{r['p50']:.2f} / {r['p90']:.2f} / {r['p99']:.2f}</td>"
        f"<td class='n'>{r['per_second']:.2f}</td>"
        + (f"<td class='n'>${r['cost']:.4f}</td>" if r["cost"] is not None else "<td class='muted'>no prices set</td>")
        + "</tr>"
        for r in stats.requests
    )
    return f"<table id='requests'>{head}{body}</table>"


def _replicas_table(stats: RunStats) -> str:
    """Who answered: shown when more than one replica did (a single one would repeat the table above)."""
    if len(stats.replicas) < 2:
        return ""
    head = (
        "<tr><th>replica</th><th>answered</th><th>share</th><th>failed</th><th>tokens in</th><th>tokens out</th>"
        "<th>latency p50 / p90 (s)</th></tr>"
    )
    body = "".join(
        f"<tr><td>{escape(r['replica'])}</td><td class='n'>{r['ok']:,}</td><td class='n'>{r['share']:.0%}</td>"
        f"<td class='n'>{r['failed']:,}</td><td class='n'>{r['prompt_tokens']:,}</td>"
        f"<td class='n'>{r['completion_tokens']:,}</td><td class='n'>{r['p50']:.2f} / {r['p90']:.2f}</td></tr>"
        for r in stats.replicas
    )
    return f"<h3>By replica</h3><table id='replicas'>{head}{body}</table>"


def _rows_table(store: Store) -> tuple[str, int]:
    instances: dict[int, list[dict[str, Any]]] = {}
    for r in store.instances():
        instances.setdefault(r["instruction_id"], []).append(r)
    rows = []
    for c in store.candidate_rows():
        verdict = c["verdict"]
        shown = "".join(
            f"<div class='{i['verdict']}'>{'Input: ' + escape(i['input']) + ' → ' if i['input'] else ''}"
            f"{escape(i['output'][:300])}{' [' + escape(i['reason']) + ']' if i['reason'] else ''}</div>"
            for i in instances.get(c["id"], [])
        )
        score = f"{c['max_rouge']:.3f}" if c["max_rouge"] is not None else ""
        rows.append(
            f"<tr><td>{escape(c['text'])}</td><td class='{verdict}'>{verdict}</td><td>{escape(c['reason'])}</td>"
            f"<td>{escape(c['classification'] or '')}</td><td class='n'>{score}</td>"
            f"<td>{escape(c['nearest'] or '')}</td><td>{shown}</td></tr>"
        )
    head = (
        "<tr><th>instruction</th><th>verdict</th><th>reason</th><th>classification</th><th>max ROUGE-L</th>"
        "<th>nearest neighbour</th><th>instances</th></tr>"
    )
    return f"<table id='rows'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>", len(rows)


def render(store: Store) -> str:
    stats = compute(store)
    config = json.loads(store.get_meta("config") or "{}")
    pairs, method = verb_noun_pairs(i.text for i in store.accepted("machine"))
    top = top_verbs_and_nouns(pairs)
    found = sum(1 for p in pairs if p)
    table1 = "".join(f"<tr><td>{escape(k)}</td><td class='n'>{_fmt(v)}</td></tr>" for k, v in stats.table1.items())
    rows, n_rows = _rows_table(store)
    lm = config.get("lm", {})
    model = lm.get("model") or ("SmolLM2-135M-Instruct (embedded)" if lm.get("backend") == "llamacpp" else "?")
    generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Self-Instruct run report: {escape(str(store.run_dir))}</title>
<style>{STYLE}</style></head><body>
<h1>Self-Instruct run report</h1>
<p>Run <code>{escape(str(store.run_dir))}</code> · backend <code>{escape(str(lm.get("backend")))}</code> ·
model <code>{escape(str(model))}</code> · seed {escape(str(config.get("seed")))} · generated {generated}</p>
<p id="prompts">{" · ".join(f"{escape(name)}: <code>{escape(value)}</code>" for name, value in steering(config))}</p>

<h2 id="table1">Statistics (the paper's Table 1)</h2>
<table>{table1}</table>

<h2 id="funnel">Filter funnel</h2>
<h3>Instructions</h3>{_funnel_table(stats.instruction_funnel, "candidates", "accepted")}
<h3>Instances</h3>{_funnel_table(stats.instance_funnel, "instances", "kept")}

<h2 id="distributions">Distributions</h2>
<div class="charts">
{histogram(stats.seed_similarity, "Highest ROUGE-L of each instruction to the seeds", lo=0.0, hi=1.0)}
{histogram(stats.instruction_lengths, "Instruction length (words)")}
{histogram(stats.input_lengths, "Non-empty input length (words)")}
{histogram(stats.output_lengths, "Output length (words)")}
</div>

<h2 id="diversity">Verb-noun diversity</h2>
<p>Top {len(top)} root verbs and their top 4 direct-object nouns, from {found:,} of {len(pairs):,}
instructions with a verb-noun pair. Method: <span id="diversity-method">{escape(method)}</span>.</p>
{verb_noun_chart(top)}

<h2 id="requests-section">LM requests</h2>
{_requests_table(stats)}
{_replicas_table(stats)}

<h2 id="instructions">Instructions</h2>
<input id="search" type="search" placeholder="Search instructions, reasons, instances…">
<p><span id="shown">{n_rows}</span> of {n_rows} candidates shown.</p>
{rows}
<script>{SCRIPT}</script>
</body></html>
"""
