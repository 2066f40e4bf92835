"""The evaluation report: one offline HTML page with each model's scores and the responses side by side.

Every response is model output: escaped, never markup.
"""

from __future__ import annotations

from html import escape
from typing import Any

from selfinstruct.report.html import STYLE
from selfinstruct.similarity import rouge_l_f1

RATINGS = ("A", "B", "C", "D")


def _models_table(results: dict[str, Any]) -> str:
    judged = any("judge" in m for m in results["models"].values())
    head = "<tr><th>model</th><th>backend</th><th>items</th><th>ROUGE-L</th>"
    if judged:
        head += "".join(f"<th>{r}</th>" for r in RATINGS) + "<th>unparsed</th><th>A+B</th><th>judge</th>"
    rows = []
    for label, m in results["models"].items():
        row = (
            f"<tr><td>{escape(label)}</td><td>{escape(m['backend'])}</td><td class='n'>{m['n']}</td>"
            f"<td class='n'>{m['rougeL']:.4f}</td>"
        )
        if judged and "judge" in m:
            j = m["judge"]
            row += "".join(f"<td class='n'>{j[r]}</td>" for r in RATINGS)
            row += (
                f"<td class='n'>{j['unparsed']}</td><td class='n'>{j['A+B %']:.0f}%</td><td>{escape(j['model'])}</td>"
            )
        rows.append(row + "</tr>")
    return f"<table id='models'>{head}</tr>{''.join(rows)}</table>"


def render_evaluation(results: dict[str, Any], predictions: dict[str, list[dict[str, Any]]]) -> str:
    labels = list(predictions)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>selfinstruct evaluation</title>",
        f"<style>{STYLE}</style></head><body><h1>Evaluation</h1>",
        f"<p class='muted'>evaluation set: {escape(results['eval_set'])}; ROUGE-L F1 of each response against the "
        "reference output (rouge_score's tokenizer, no stemming).</p>",
        "<h2>Scores</h2>",
        _models_table(results),
    ]
    if "comparison" in results:
        c = results["comparison"]
        parts.append(
            f"<h2>Side by side</h2><p id='comparison'>Per item, <b>{escape(c['second'])}</b> scores higher than "
            f"<b>{escape(c['first'])}</b> on {c['wins']} items, the same on {c['ties']}, lower on {c['losses']}.</p>"
        )
    head = "<tr><th>task</th><th>instruction and input</th><th>reference</th>" + "".join(
        f"<th>{escape(label)}</th>" for label in labels
    )
    rows = []
    for i, first in enumerate(predictions[labels[0]] if labels else []):
        cells = [f"{escape(first['instruction'])}"]
        if first["input"].strip():
            cells.append(f"<br><span class='muted'>{escape(first['input'])}</span>")
        responses = "".join(
            f"<td>{escape(predictions[label][i]['response'])}<br><span class='muted'>ROUGE-L "
            f"{rouge_l_f1(first['target'], predictions[label][i]['response']):.3f}</span></td>"
            for label in labels
        )
        rows.append(
            f"<tr><td>{escape(str(first.get('id', i)))}<br><span class='muted'>"
            f"{escape(str(first.get('motivation_app', '')))}</span></td><td>{''.join(cells)}</td>"
            f"<td>{escape(first['target'])}</td>{responses}</tr>"
        )
    parts.append(f"<h2>Responses</h2><table id='rows'>{head}</tr>{''.join(rows)}</table></body></html>")
    return "".join(parts)
