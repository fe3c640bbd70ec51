import time, pytest
from tests.live import PostgresCluster

def test_cluster_timing(processes):
    t = time.monotonic()
    c = PostgresCluster(processes)
    print("\ncluster", time.monotonic() - t)
    t = time.monotonic(); c.migrate(); print("migrate", time.monotonic() - t)
    c.primary.stop(); c.replica.stop(); c.remove()
