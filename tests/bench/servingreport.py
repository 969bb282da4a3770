"""The serving benchmark's report: JSON, markdown with the targets checked, and a chart (SVG, then PNG)."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 900, 440
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SERIES = {"suite-gateway": "#1f77b4", "suite-direct": "#2ca02c", "llama-server": "#d62728", "option-b": "#9467bd"}
LABELS = {"suite-gateway": "suite, through the gateway", "suite-direct": "suite, inference service directly",
          "llama-server": "llama-server (-np = streams)", "option-b": "design (b): gateway → relay → llama-server"}


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def chart_svg(result: dict) -> str:
    """Aggregate tokens/s against concurrent streams, one line per target."""
    levels = [int(level) for level in result["concurrency"]]
    rows = result["concurrency"]
    targets = [t for t in SERIES if f"{t}/concurrent" in rows[str(levels[0])]]
    peak = max(rows[str(n)][f"{t}/concurrent"]["tokens_per_s"] for n in levels for t in targets)
    step = next(v for v in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000) if v * 5 >= peak * 1.1)
    top = step * 5
    width, height, left, right, upper, lower = WIDTH, HEIGHT, 70, 300, 60, 60
    plot_w, plot_h = width - left - right, height - upper - lower

    def x(i: int) -> float:
        return left + plot_w * (i / max(len(levels) - 1, 1))

    def y(value: float) -> float:
        return upper + plot_h * (1 - value / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="DejaVu Sans, sans-serif" font-size="13">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="24" font-size="16">Aggregate tokens/s against concurrent streams</text>',
             f'<text x="{left}" y="44" fill="#555">{result["model"]}, {result["settings"]["threads"]} thread(s), '
             f'median of {result["settings"]["rounds"]} rounds, {result["date"]}</text>']
    for k in range(6):
        value = step * k
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     f'stroke="#ddd"/><text x="{left - 8}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}</text>')
    for i, level in enumerate(levels):
        parts.append(f'<text x="{x(i):.1f}" y="{upper + plot_h + 20}" text-anchor="middle">{level}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 15}" text-anchor="middle">concurrent streams</text>')
    for row, target in enumerate(targets):
        colour = SERIES[target]
        points = [(x(i), y(rows[str(n)][f"{target}/concurrent"]["tokens_per_s"])) for i, n in enumerate(levels)]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour}"/>' for px, py in points]
        ly = upper + 10 + row * 40
        parts.append(f'<line x1="{width - right + 15}" x2="{width - right + 40}" y1="{ly}" y2="{ly}" '
                     f'stroke="{colour}" stroke-width="3"/>')
        words = LABELS[target].split(", ", 1) if ", " in LABELS[target] else LABELS[target].split(": ", 1)
        for j, word in enumerate(words):
            parts.append(f'<text x="{width - right + 46}" y="{ly + 4 + j * 16}">{word}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def render_png(svg: Path, png: Path) -> None:
    """Rasterise the SVG with the Chromium the suite already uses (no plotting library needed)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.set_content(f'<html><body style="margin:0">{svg.read_text()}</body></html>')
            page.locator("svg").screenshot(path=str(png))
        finally:
            browser.close()


def markdown(result: dict) -> str:
    rows = result["concurrency"]
    s = result["settings"]
    lines = [
        "# Serving benchmark: continuous batching",
        "",
        f"Run {result['date']} on {result['machine']['cpus']} CPU cores ({result['machine']['platform']}), model "
        f"`{result['model']}`, {s['llama_cpp']}. Every engine used {s['threads']} threads, {s['n_ctx_per_slot']} "
        f"tokens of context per slot and {s['n_batch']}-token batches, with as many slots as streams. "
        f"Each stream is a different ~100-token story request answered greedily with up to {s['max_tokens']} tokens. "
        f"Targets alternated within each round; {s['rounds']} counted rounds per target and level (after one "
        "warm-up round), medians reported. The machine was shared with other work during the run "
        f"(load average at the end: {', '.join(f'{v:.1f}' for v in result['machine']['load_average_at_end'])}), "
        "so compare targets within this run, not with other runs.",
        "",
        "![Aggregate tokens/s against concurrent streams](serving.png)",
        "",
        "| streams | target | aggregate tok/s | % of llama-server | TTFT p50 ms | TTFT p95 ms "
        "| time per output token ms |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for level, row in rows.items():
        anchor = row["llama-server/concurrent"]["tokens_per_s"]
        for name, value in row.items():
            if not name.endswith("/concurrent"):
                continue
            target = name.split("/")[0]
            share = value["tokens_per_s"] / anchor
            if target in ("suite-gateway", "suite-direct"):
                verdicts.append((level, target, share))
            lines.append(f"| {level} | {target} | {value['tokens_per_s']} | {share:.1%} | {value['ttft_ms_p50']} | "
                         f"{value['ttft_ms_p95']} | {value['tpot_ms_p50']} |")
    lines += ["", "Goal: at least 95% of llama-server's aggregate at every concurrency.", ""]
    for level, target, share in verdicts:
        lines.append(f"- {level} stream(s), {target}: {share:.1%} ({_verdict(share >= 0.95)})")
    pair = str(s.get("pair_level", 4))
    if pair in rows:
        lines += ["", f"## {pair} concurrent requests against the same {pair} one after another", "",
                  "| target | one after another tok/s | concurrent tok/s | gain (median of paired rounds) |",
                  "|---|---|---|---|"]
        for name, value in rows[pair].items():
            if name.endswith("/concurrent") and "gain_over_one_after_another" in value:
                target = name.split("/")[0]
                seq = rows[pair][f"{target}/one-after-another"]["tokens_per_s"]
                lines.append(f"| {target} | {seq} | {value['tokens_per_s']} | "
                             f"{value['gain_over_one_after_another']}x |")
        gain = rows[pair]["suite-gateway/concurrent"]["gain_over_one_after_another"]
        lines += ["", f"Acceptance: through the gateway at least 1.35x: **{gain}x** ({_verdict(gain >= 1.35)})."]
    cache = result.get("prompt_cache")
    if cache:
        lines += ["", "## Prompt cache: 4 conversations interleaved", "",
                  f"Each conversation has about {cache['prompt_tokens_median']} prompt tokens at the measured turn "
                  "(a ~750-token document, a summary, a question, the model's answer and a follow-up). The four "
                  "first turns run one after another, then the four next turns in the same order (warm: the "
                  "history is in a slot), then the same next turns in a session no cache has seen (cold: a "
                  "different session id at the start of the system message, same length). Median TTFT.",
                  "", "| target | warm TTFT ms | cold TTFT ms | warm / cold |", "|---|---|---|---|"]
        for target, value in cache.items():
            if isinstance(value, dict):
                lines.append(f"| {target} | {value['warm_ttft_ms_p50']} | {value['cold_ttft_ms_p50']} | "
                             f"{value['warm_over_cold']} |")
        ratio = cache["suite-gateway"]["warm_over_cold"]
        lines += ["", f"Goal: warm at most 30% of cold through the gateway: **{ratio:.0%}** "
                  f"({_verdict(ratio <= 0.3)})."]
    memory = result.get("memory")
    if memory:
        lines += ["", "## Memory of the bigger context", "",
                  "| inference service | RSS loaded MiB | RSS after one answer MiB |", "|---|---|---|"]
        for label, value in memory.items():
            lines.append(f"| {label} | {value['rss_mib_loaded']} | {value['rss_mib_after_answer']} |")
    lines.append("")
    return "\n".join(lines)


def write_report(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "serving.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "serving.md").write_text(markdown(result))
    svg = out_dir / "serving.svg"
    svg.write_text(chart_svg(result) + "\n")
    render_png(svg, out_dir / "serving.png")
