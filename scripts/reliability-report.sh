#!/usr/bin/env bash
# Rewrites one section of docs/RELIABILITY.md from the figures the reliability targets record.
#   scripts/reliability-report.sh fuzz        totals per fuzz target from Fuzz/ledger.tsv
#   scripts/reliability-report.sh sanitizers  from .build/reliability/sanitizers.md
#   scripts/reliability-report.sh soak        from .build/reliability/soak.md
# Each section sits between <!-- NAME:begin --> and <!-- NAME:end --> markers.
set -euo pipefail
cd "$(dirname "$0")/.."
section=$1
case "$section" in
fuzz)
    body=$(python3 - <<'PY'
import csv, collections
rows = list(csv.DictReader(open("Fuzz/ledger.tsv"), delimiter="\t"))
tot = collections.OrderedDict()
for r in rows:
    t = tot.setdefault(r["target"], {"runs": 0, "seconds": 0, "execs": 0, "corpus": 0, "crashes": [], "last": ""})
    t["runs"] += 1
    t["seconds"] += int(r["seconds"] or 0)
    t["execs"] += int(r["executions"] or 0)
    t["corpus"] = r["corpus"]
    t["last"] = r["date"]
    if r["result"] != "clean":
        t["crashes"].append(r["date"] + " " + r["result"])
print("| target | runs | total time | executions | corpus files | last run ended | crashes |")
print("|---|---|---|---|---|---|---|")
for name, t in tot.items():
    m, s = divmod(t["seconds"], 60)
    crashes = "; ".join(t["crashes"]) or "none"
    print(f"| `{name}` | {t['runs']} | {m} min {s} s | {t['execs']:,} | {t['corpus']} | {t['last']} | {crashes} |")
print()
print("Every run is one line of `Fuzz/ledger.tsv` (crashes are listed with the run that found them;")
print("see the findings section for what each was and how it was fixed).")
PY
)
    ;;
sanitizers | soak)
    src=.build/reliability/$section.md
    [ -f "$src" ] || { echo "no $src" >&2; exit 1; }
    body=$(cat "$src")
    ;;
*) echo "unknown section $section" >&2; exit 2 ;;
esac
[ -f docs/RELIABILITY.md ] || { echo "docs/RELIABILITY.md missing" >&2; exit 1; }
python3 - "$section" "$body" <<'PY'
import sys, re
section, body = sys.argv[1], sys.argv[2]
text = open("docs/RELIABILITY.md").read()
begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
new = begin + "\n" + body.strip() + "\n" + end
text = pattern.sub(lambda m: new, text) if pattern.search(text) else text + "\n" + new + "\n"
open("docs/RELIABILITY.md", "w").write(text)
PY
