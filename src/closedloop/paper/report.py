"""The reproduction report: ``results.json`` and a self-contained ``index.html``.

The page needs no network: figures are embedded as PNG data, the interactive spectrum view is
a small inline script drawing eig(P) of the main runs on a canvas (a slider over epochs, the
unit circle, the stage boundaries on the loss curve). Every verdict shown is the one computed
from its written criterion; nothing here judges anything.

Example
-------
>>> html = render_html({"claims": [], "figures": [], "settings": {}, "timing": {}}, {})
>>> html.startswith("<!DOCTYPE html>")
True
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from closedloop.runs.store import Run

EIGENVALUES_SHOWN = 12


def spectrum_view_data(name: str, run: Run, stages: dict[str, int | None]) -> dict[str, Any]:
    """What the interactive view needs of one run: the largest eigenvalues per epoch, the test
    loss and the stage boundaries (rounded to keep the page small)."""
    values = run.coupled_eigenvalues[:, :EIGENVALUES_SHOWN]
    values = np.where(np.isfinite(values), values, 0)
    return {"name": name,
            "eig": np.round(np.stack([values.real, values.imag], -1), 5).tolist(),
            "test_loss": [float(f"{v:.5g}") if np.isfinite(v) else None
                          for v in run.metrics["test_loss"]],
            "radius": np.round(np.nan_to_num(run.metrics["spectral_radius"]), 5).tolist(),
            "stages": stages}


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        if len(value) > 12:
            shown = ", ".join(_value(v) for v in value[:12])
            return f"[{shown}, … ({len(value)} values)]"
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if value is None:
        return "—"
    return str(value)


def _verdict_badge(claim: dict[str, Any]) -> str:
    verdict = claim["verdict"]
    css = {"supported": "ok", "not supported": "no"}.get(verdict, "partial")
    return f'<span class="badge {css}">{html.escape(verdict)}</span>'


def _support(claim: dict[str, Any]) -> str:
    votes = claim["per_seed"]
    return f"{sum(votes)}/{len(votes)} ({claim['support']:.0%})"


def _seed_table(claim: dict[str, Any]) -> str:
    """Every seed's verdict, case, failed criterion parts and headline numbers."""
    keys: list[str] = []
    for row in claim["table"]:
        keys += [k for k in row["numbers"] if k not in keys]
    with_cases = any(row["case"] for row in claim["table"])
    head = ("<tr><th>seed</th><th>supports</th>" + ("<th>case</th>" if with_cases else "")
            + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + "<th>why not</th></tr>")
    body = ""
    for row in claim["table"]:
        mark = '<span class="yes">yes</span>' if row["supported"] else '<span class="nay">no</span>'
        case = f"<td>{html.escape(row['case'] or '—')}</td>" if with_cases else ""
        numbers = "".join(f"<td>{html.escape(_value(row['numbers'].get(k)))}</td>"
                          for k in keys)
        body += (f"<tr><td>{row['seed']}</td><td>{mark}</td>{case}{numbers}"
                 f"<td>{html.escape('; '.join(row['failed']))}</td></tr>")
    return f'<table class="seeds">{head}{body}</table>'


def _cases(claim: dict[str, Any]) -> str:
    if not claim.get("cases"):
        return ""
    parts = [f"{html.escape(case)}: {count['supported']}/{count['judged']}"
             for case, count in claim["cases"].items()]
    return "<p><b>By case.</b> " + "; ".join(parts) + ".</p>"


def _claim_block(claim: dict[str, Any], images: dict[str, Path]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_value(v))}</td></tr>"
                   for k, v in claim["measured"].items())
    seeds = ""
    if len(claim["per_seed"]) > 1:
        picture = images.get(f"seeds-{claim['id']}")
        seeds = (f"<p><b>Support over seeds:</b> {_support(claim)}.</p>{_cases(claim)}"
                 + (f'<img src="{_png(picture)}" alt="{html.escape(claim["id"])} over seeds" '
                    f'class="seeds">' if picture else "")
                 + f"<details open><summary>Per seed</summary>{_seed_table(claim)}</details>")
    return f"""
<div class="claim" id="claim-{html.escape(claim['id'])}">
  <h3>{html.escape(claim['id'])} {_verdict_badge(claim)}</h3>
  <p class="statement">{html.escape(claim['statement'])}</p>
  <p><b>Criterion.</b> {html.escape(claim['criterion'])}</p>
  {seeds}
  <details open><summary>Measured (seed {claim['seed']})</summary>
  <table class="measured">{rows}</table></details>
</div>"""


def render_html(results: dict[str, Any], images: dict[str, Path],
                spectra: list[dict[str, Any]] | None = None) -> str:
    """The report page for ``results`` (as written to results.json) and figure PNGs."""
    claims = results["claims"]
    table = "".join(
        f'<tr><td><a href="#claim-{html.escape(c["id"])}">{html.escape(c["id"])}</a></td>'
        f'<td>{html.escape(c["figure"])}</td><td>{_verdict_badge(c)}</td>'
        f'<td>{_support(c)}</td><td>{html.escape(c["statement"])}</td></tr>'
        for c in claims)
    sections = []
    for figure in results["figures"]:
        name = figure["figure"]
        body = ""
        if name in images:  # the figure itself (seeds-* images belong to the claims)
            body += (f'<img src="{_png(images[name])}" alt="{html.escape(figure["title"])}" '
                     f'class="figure">')
        if figure.get("error"):
            body += f'<p class="error">Not produced: {html.escape(figure["error"])}</p>'
        body += "".join(_claim_block(c, images) for c in claims if c["figure"] == name)
        sections.append(f'<section id="{name}"><h2>{html.escape(name)}: '
                        f'{html.escape(figure["title"])}</h2>{body}</section>')
    settings = results["settings"]
    timing = results.get("timing", {})
    total_min = timing.get("total_s", 0) / 60
    training_min = timing.get("training_s", 0) / 60
    mode = "quick (reduced, for tests)" if settings.get("quick") else "the paper's full settings"
    spectra_json = json.dumps(spectra or [], separators=(",", ":"))
    viewer = _VIEWER if spectra else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>closedloop: reproduction of Ger and Barak (NeurIPS 2025)</title>
<style>{_CSS}</style></head>
<body>
<h1>Learning dynamics of RNNs in closed-loop environments: reproduction report</h1>
<p>Settings: {mode}; seeds {html.escape(str(settings.get("seeds")))}; wall time
{total_min:.1f} min (training {training_min:.1f} min).
Generated by closedloop {html.escape(str(results.get("version", "")))}.</p>
<table class="verdicts"><tr><th>claim</th><th>figure</th><th>verdict</th><th>support</th>
<th>statement</th></tr>{table}</table>
{viewer}
{"".join(sections)}
<script id="spectra" type="application/json">{spectra_json}</script>
<script>{_SCRIPT if spectra else ""}</script>
</body></html>
"""


def write_report(folder: Path, results: dict[str, Any], images: dict[str, Path],
                 spectra: list[dict[str, Any]] | None = None) -> Path:
    """Write results.json and index.html into ``folder``; returns the page's path."""
    (folder / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False))
    page = folder / "index.html"
    page.write_text(render_html(results, images, spectra))
    return page


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;
margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
img.figure{max-width:100%;border:1px solid #eee}img.seeds{max-width:100%}
.yes{color:#2a8a4a;font-weight:bold}.nay{color:#b8322e;font-weight:bold}
table{border-collapse:collapse;font-size:0.9em}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
.badge{padding:2px 8px;border-radius:8px;font-size:0.8em;color:#fff;white-space:nowrap}
.ok{background:#2a8a4a}.no{background:#b8322e}.partial{background:#c98a13}
.claim{background:#fafafa;border-left:4px solid #ccc;padding:0.3em 1em;margin:1em 0}
.statement{font-style:italic}.error{color:#b8322e}
#viewer{display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start}
#viewer canvas{border:1px solid #ddd;background:#fff}
#controls{min-width:260px}
"""

_VIEWER = """
<section id="spectrum"><h2>Interactive: eig(P) across training</h2>
<p>Pick a run and move the slider: the dots are the 12 largest eigenvalues of the coupled
matrix P at that epoch; the circle is the unit circle. Below, the test loss with the stages
read from the spectrum (yellow: stage 1, orange: stage 2, green: stage 3) and the epoch shown.</p>
<div id="viewer"><canvas id="plane" width="420" height="420"></canvas>
<div id="controls"><div id="runs"></div>
<p><input type="range" id="epoch" min="0" max="0" value="0" style="width:100%"></p>
<p id="label">epoch 0</p><canvas id="loss" width="420" height="160"></canvas></div></div>
</section>"""

_SCRIPT = """
const spectra = JSON.parse(document.getElementById('spectra').textContent);
let current = 0;
const plane = document.getElementById('plane'), loss = document.getElementById('loss');
const slider = document.getElementById('epoch'), label = document.getElementById('label');
function stageOf(run, e){const s=run.stages;
  if(s.stage1_end!==null && e<=s.stage1_end) return 'stage 1';
  if(s.stage2_end!==null && e<=s.stage2_end) return 'stage 2';
  if(s.stage2_end!==null) return 'stage 3'; return s.stage1_end!==null?'stage 2':'stage 1';}
function drawPlane(){const run=spectra[current], e=+slider.value, g=plane.getContext('2d');
  const W=plane.width, H=plane.height, scale=W/2.8, cx=W/2, cy=H/2;
  g.clearRect(0,0,W,H); g.strokeStyle='#bbb'; g.beginPath();
  g.moveTo(0,cy); g.lineTo(W,cy); g.moveTo(cx,0); g.lineTo(cx,H); g.stroke();
  g.strokeStyle='#555'; g.beginPath(); g.arc(cx,cy,scale,0,2*Math.PI); g.stroke();
  g.fillStyle='#1f5fa8';
  for(const [re,im] of run.eig[e]){g.beginPath();
    g.arc(cx+re*scale, cy-im*scale, 4, 0, 2*Math.PI); g.fill();}
  label.textContent = run.name+': epoch '+e+', spectral radius '+run.radius[e].toFixed(4)+
    ', '+stageOf(run,e);}
function drawLoss(){const run=spectra[current], e=+slider.value, g=loss.getContext('2d');
  const W=loss.width, H=loss.height, n=run.test_loss.length;
  const vals=run.test_loss.filter(v=>v!==null&&v>0).map(Math.log10);
  const lo=Math.min(...vals), hi=Math.max(...vals);
  const x=i=>i/(n-1)*W, y=v=>H-(Math.log10(v)-lo)/(hi-lo+1e-9)*(H-10)-5;
  g.clearRect(0,0,W,H);
  const s=run.stages, bounds=[0,s.stage1_end,s.stage2_end,n-1];
  const colors=['#fff2b3','#ffd9a8','#cdeccf'];
  for(let k=0;k<3;k++){if(bounds[k]===null||bounds[k+1]===null) continue;
    g.fillStyle=colors[k]; g.fillRect(x(bounds[k]),0,x(bounds[k+1])-x(bounds[k]),H);}
  g.strokeStyle='#000'; g.beginPath(); let started=false;
  run.test_loss.forEach((v,i)=>{if(v===null||v<=0) return;
    if(!started){g.moveTo(x(i),y(v)); started=true;} else g.lineTo(x(i),y(v));}); g.stroke();
  g.strokeStyle='#c8312c'; g.beginPath(); g.moveTo(x(e),0); g.lineTo(x(e),H); g.stroke();}
function draw(){drawPlane(); drawLoss();}
function select(i){current=i; slider.max=spectra[i].eig.length-1;
  if(+slider.value>+slider.max) slider.value=slider.max;
  document.querySelectorAll('#runs button').forEach((b,k)=>b.disabled=(k===i)); draw();}
spectra.forEach((run,i)=>{const b=document.createElement('button'); b.textContent=run.name;
  b.onclick=()=>select(i); document.getElementById('runs').appendChild(b);});
slider.addEventListener('input', draw);
if(spectra.length) select(0);
"""
