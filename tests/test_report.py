"""The HTML report, the statistics and every export format, loaded back with its consumer library."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import ScriptedLM

from selfinstruct.cli import cli
from selfinstruct.export import ExportError, check_openai_chat, push_to_hub
from selfinstruct.lm import Completion
from selfinstruct.pipeline import Run
from selfinstruct.report.diversity import heuristic_pair, top_verbs_and_nouns
from selfinstruct.report.stats import compute, percentile

SCRIPT = "<script>alert('x')</script>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class HostileLM(ScriptedLM):
    """Writes one instruction and one instance holding markup, to prove the report escapes it."""

    async def complete(self, prompt, sampling, seed):
        completion = await super().complete(prompt, sampling, seed)
        if prompt.startswith("Come up with") and self.sent == 1:
            return Completion(
                f" Explain what {SCRIPT} does in a web page.\n10. " + completion.text.strip(), "stop", 100, 60
            )
        if prompt.startswith("Come up with examples") and self.sent % 3 == 0:
            return Completion(f"Output: {SCRIPT} & <b>bold</b>\n", "stop", 100, 10)
        return completion


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("run")
    run = Run.open(path, {"num_instructions": 12}, lm=HostileLM())
    run.run_all()
    run.close()
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_stats_match_the_store(run_dir: Path) -> None:
    run = Run.open(run_dir)
    stats = compute(run.store)
    machine = run.store.accepted("machine")
    assert stats.table1["instructions"] == len(machine) >= 12
    assert (
        stats.table1["classification instructions"]
        + stats.table1["non-classification instructions"]
        + stats.table1["instructions with unknown classification"]
    ) == len(machine)
    kept = [r for r in run.store.instances("kept") if r["origin"] == "machine"]
    assert stats.table1["instances"] == len(kept)
    assert stats.instruction_funnel.kept == len(machine)
    assert stats.instruction_funnel.total == stats.instruction_funnel.kept + sum(
        stats.instruction_funnel.dropped.values()
    )
    assert stats.instance_funnel.dropped["marker_in_text"] == 0
    assert len(stats.seed_similarity) == len(machine) and all(0 <= s <= 0.7 for s in stats.seed_similarity)
    assert {r["stage"] for r in stats.requests} == {"bootstrap", "classify", "instances"}
    code, output = invoke("stats", str(run_dir))
    assert code == 0 and "Table 1" in output and f"{len(machine)}" in output


def test_report_has_every_section_and_escapes_generated_text(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, output = invoke("report", str(run_dir), "--output", str(out))
    assert code == 0, output
    page = out.read_text()
    for anchor in ("table1", "funnel", "distributions", "diversity", "requests-section", "instructions"):
        assert f'id="{anchor}"' in page
    assert page.count('class="histogram"') == 4 and 'id="verb-noun"' in page
    assert "<td>dropped: marker_in_text</td><td class='n'>0</td>" in page  # the safety net's count, even at 0
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert SCRIPT not in page and "<b>bold</b>" not in page
    assert not re.search(r"https?://(?!www\.w3\.org)", page), "the page must not load anything from the network"
    candidates = Run.open(run_dir).store.candidate_rows()
    assert page.count("<tr><td>") >= len(candidates)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert invoke("report", str(run_dir), "--output", str(out))[0] == 0
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'p'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=3000",
    ]
    term = "explain what"
    dom = subprocess.run(
        [*flags, "--dump-dom", f"{out.as_uri()}#q={term.replace(' ', '%20')}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # no errors or messages from the page's script
    html = dom.stdout
    assert html.count("<rect") > 20  # the charts were drawn
    rows = re.findall(r"<tr(?: style=\"([^\"]*)\")?><td>", html)
    candidates = Run.open(run_dir).store.candidate_rows()
    assert len(rows) >= len(candidates)
    matching = sum(1 for c in candidates if term in c["text"].lower())
    assert re.search(rf'<span id="shown">{matching}</span>', html), "the linked search filtered the table"
    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [*flags, f"--screenshot={screenshot}", "--window-size=1280,1800", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000


def test_every_export_format_loads_in_its_consumer(run_dir: Path, tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "export"
    code, output = invoke("export", str(run_dir), "--output", str(out))
    assert code == 0, output
    alpaca = json.loads((out / "alpaca_data.json").read_text())
    assert alpaca and all(set(r) == {"instruction", "input", "output"} for r in alpaca)
    chat = [json.loads(line) for line in (out / "openai_chat.jsonl").read_text().splitlines()]
    assert len(chat) == len(alpaca) and all(check_openai_chat(r) == [] for r in chat)
    assert chat[0]["messages"][1]["content"] == alpaca[0]["output"].strip()
    sharegpt = json.loads((out / "sharegpt.json").read_text())
    assert [m["from"] for m in sharegpt[0]["conversations"]] == ["human", "gpt"]
    dataset = datasets.load_from_disk(str(out / "hf_dataset"))
    assert dataset.num_rows == len(alpaca) and dataset[0] == alpaca[0]
    table = pq.read_table(out / "data.parquet")
    assert table.num_rows == len(alpaca) and table.column_names == ["instruction", "input", "output"]
    card = (out / "README.md").read_text()
    assert "Table 1" in card and "seed tasks" in card and "too_similar" not in card or "reason dropped" in card
    assert not list(out.glob(".*")), "no temporary file or directory is left behind"
    # One format at a time; unknown formats are refused by the CLI.
    code, output = invoke("export", str(run_dir), "--output", str(tmp_path / "one"), "--format", "sharegpt")
    assert code == 0 and sorted(p.name for p in (tmp_path / "one").iterdir()) == ["README.md", "sharegpt.json"]
    assert invoke("export", str(run_dir), "--format", "csv")[0] != 0


def test_openai_chat_check_catches_what_openai_rejects() -> None:
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    assert check_openai_chat(good) == []
    assert check_openai_chat({"messages": []}) == ["missing_messages_list"]
    assert check_openai_chat({**good, "extra": 1}) == ["unrecognized_key: extra"]
    bad = {"messages": [{"role": "human", "content": ""}, {"role": "user", "content": "x", "lang": "en"}]}
    errors = check_openai_chat(bad)
    assert any(e.startswith("unrecognized_role") for e in errors)
    assert any(e.startswith("missing_content") for e in errors)
    assert any(e.startswith("message_unrecognized_key") for e in errors)
    assert "example_missing_assistant_message" in errors


def test_push_to_hub_fails_clearly_offline(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExportError, match="could not push to the Hugging Face Hub repository 'me/data'"):
        push_to_hub(Run.open(run_dir).store, "me/data", token="hf_fake")


def test_verb_noun_heuristic() -> None:
    assert heuristic_pair("Write a short poem about the sea.") == ("write", "poem")
    assert heuristic_pair("Give me three tips for sleeping better.") == ("give", "tips")
    assert heuristic_pair("What is the capital of France?") is None
    top = top_verbs_and_nouns([("write", "poem"), ("write", "story"), ("write", "poem"), ("list", "colours"), None])
    assert top[0] == ("write", 3, [("poem", 2), ("story", 1)])


def test_percentile() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0


def test_requests_per_replica_in_stats_and_report(tmp_path: Path) -> None:
    """Which replica answered each request is stored; `stats` and the report show each replica's share, tokens and
    latency when more than one answered."""
    with Run.open(tmp_path / "run", {"num_instructions": 12}, lm=[ScriptedLM(), ScriptedLM()]) as run:
        run.bootstrap()
        rows = {r["replica"]: r for r in compute(run.store).replicas}
        stored = run.store._db.execute("SELECT COUNT(*) FROM requests WHERE status='ok'").fetchone()[0]
    assert set(rows) == {"replica 1", "replica 2"} and min(r["ok"] for r in rows.values()) > 0
    assert sum(r["ok"] for r in rows.values()) == stored
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)
    code, output = invoke("stats", str(tmp_path / "run"))
    assert code == 0 and "by replica" in output and "replica 2" in output
    out = tmp_path / "report.html"
    assert invoke("report", str(tmp_path / "run"), "--output", str(out))[0] == 0
    assert "id='replicas'" in out.read_text()
