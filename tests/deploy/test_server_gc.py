"""A server process freezes what it loaded to serve (GC_FREEZE): the collector's full passes, which stop the
event loop and with it every push in flight, then walk only what came after the start, not all of Django."""
import os
import subprocess
import sys

from tests.support.live import ROOT

REPORT = ("import gc, imserver.asgi; gc.collect(); "
          "print(gc.get_freeze_count(), sum(len(gc.get_objects(g)) for g in range(3)))")


def _loaded(**env) -> tuple[int, int]:
    """(objects frozen, objects a full collection walks) in a process that has loaded the server's application."""
    out = subprocess.run([sys.executable, "-c", REPORT], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DJANGO_SETTINGS_MODULE": "imserver.settings", **env})
    assert out.returncode == 0, out.stderr
    frozen, walked = map(int, out.stdout.split())
    return frozen, walked


def test_what_the_server_loaded_is_left_out_of_full_collections():
    frozen, walked = _loaded()
    assert frozen > 10 * walked, (frozen, walked)


def test_with_the_freeze_off_a_full_collection_walks_everything():
    frozen, walked = _loaded(GC_FREEZE="false")
    assert frozen == 0 and walked > 100_000
