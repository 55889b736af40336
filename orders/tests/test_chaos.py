"""A short chaos run (bench/chaos.py) in the suite: real cluster and supplier processes, random faults.

About a minute: 40 orders over 20 s while the cluster is SIGKILLed and restarted, clocks jump
and the supplier fails at random, then a drain. The seed is new every run and printed, so a
failure can be replayed: CHAOS_SEED=<seed> pytest orders/tests/test_chaos.py. The long run
(hundreds of orders) is `bench/chaos.py`, recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import random

import pytest
from django.db import connection

from bench.chaos import CLUSTER_SETTINGS, Chaos, ChaosConfig, SupplierProcess
from orders.tests.clusters import Cluster, cluster_env
from shop.demo import demo_catalog_load

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

ORDERS = int(os.environ.get("CHAOS_ORDERS", "40"))


@pytest.fixture
def chaos_supplier(tmp_path, settings):
    from bench.common import free_port

    supplier = SupplierProcess(db_path=tmp_path / "supplier.sqlite3", port=free_port(),
                               log_path=tmp_path / "supplier.log")
    supplier.start()
    settings.SUPPLIER_BASE_URL = supplier.url
    settings.SUPPLIER_API_KEY = supplier.api_key
    settings.SUPPLIER_TIMEOUT = 2.0
    yield supplier
    supplier.stop()


def test_chaos_keeps_every_order_exactly_once(chaos_supplier, tmp_path):
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**31))
    print(f"\nchaos seed {seed}: replay with CHAOS_SEED={seed}")
    demo_catalog_load()
    env = cluster_env(chaos_supplier.url, chaos_supplier.api_key, **CLUSTER_SETTINGS)
    cluster = Cluster(env, tmp_path)
    config = ChaosConfig(orders=ORDERS, seed=seed, storm_seconds=0.5 * ORDERS,
                         drain_seconds=90.0)
    try:
        result = Chaos(config=config, clusters=[cluster], supplier=chaos_supplier).run()
    finally:
        cluster.stop()
        connection.close()
    print("chaos:", json.dumps(result))
    assert result["violation_count"] == 0, (seed, result["violations"], cluster.logs())
    assert result["drained"], (seed, result, cluster.logs())
    assert result["events"].get("cluster_sigkill", 0) >= 1, "no kill: the run proved little"
