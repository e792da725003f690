"""The standalone executable serves /metrics (prometheus_client is inside it, issue 18).

Uses test_binary.py's sandbox (`env -i`, an empty work directory); FASTFLOW_SKIP_BINARY=1
skips it with that module.
"""

import re
import signal
import urllib.request

from _binary import HEADER, binary, ff, pytestmark, sandbox  # noqa: F401 - fixtures
from prometheus_client.parser import text_string_to_metric_families


def test_the_binary_serves_metrics_with_a_flows_own_counter(ff, sandbox):  # noqa: F811
    sandbox.write("counted.py", HEADER + """
from prometheus_client import Counter

SEEN = Counter("counted_seen", "items the flow saw")


def seen(x):
    SEEN.inc()
    return x


flow = Dataflow("counted")
op.output("out", op.map("seen", op.input("inp", flow, TestingSource(range(7))), seen),
          StdOutSink())
""")
    proc = sandbox.start(sandbox.exe, "run", "counted.py", "--api", "127.0.0.1:0",
                         "--log-level", "INFO", "--api-linger", "600")
    try:
        port = None
        for line in proc.stderr:
            found = re.search(r"dataflow API at http://127\.0\.0\.1:(\d+)/", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None
        while True:  # the flow ends at once; the linger keeps the final figures served
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=60) as r:
                if b'"state": "finished"' in r.read():
                    break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
            families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
        assert families["counted_seen"].samples[0].value == 7
        outs = {s.labels["step_id"]: s.value
                for s in families["fastflow_item_out_count"].samples}
        assert outs["counted.seen.flat_map_batch"] == 7
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
