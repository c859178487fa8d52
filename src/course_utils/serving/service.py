"""The course's pricer as a web service: a FastAPI app, a uvicorn process, and the pricers behind it.

    handle = service.start(profile, pricers=("baseline",))   # a real uvicorn process on 127.0.0.1
    httpx.post(f"{handle.url}/price", json={"title": "Nike running shoes"}).json()
    # {"price": ..., "model": "baseline stack (...)", "pricer": "baseline", "latency_ms": ...}
    handle.stop()

One module for each part; this one re-exports them, so notebook 15 reaches the whole service as `service`:

    served             what a served pricer is (`ServedPricer`), `MissingArtifactError`, where artefacts live
    app                the request and response models, 4xx answers that name the fix, the routes, micro-batching
    specialist_server  the fine-tuned specialist as a GGUF behind llama.cpp's OpenAI-compatible server
    pricers            the pricers rebuilt from what notebooks 07-14 saved (baseline, specialist, rag, ensemble, median)
    process            the service as a real uvicorn process, started, checked and stopped from Python
    load_test          a bounded load test: throughput and p50/p95 latency at several concurrency levels
"""

from __future__ import annotations

from .app import (  # noqa: F401 (re-exported)
    CONDITIONS,
    MAX_DESCRIPTION_CHARS,
    MAX_FIELD_CHARS,
    MAX_TITLE_CHARS,
    MicroBatcher,
    PriceRequest,
    PriceResponse,
    create_app,
    explain_errors,
    request_to_item,
)
from .load_test import load_test, request_payloads  # noqa: F401
from .pricers import (  # noqa: F401
    baseline_pricer,
    ensemble_pricer,
    fitted_baseline_stack,
    load_pricers,
    median_pricer,
    rag_pricer,
    stop_model_servers,
    stored_ensemble,
)
from .process import (  # noqa: F401
    BATCH_ENV,
    PRICERS_ENV,
    ServiceHandle,
    ServiceStartError,
    app_from_env,
    start,
)
from .served import (  # noqa: F401
    NOTEBOOKS,
    PRICERS,
    MissingArtifactError,
    ServedPricer,
    service_dir,
    with_capped_prompts,
)
from .specialist_server import (  # noqa: F401
    SPECIALIST_SLOTS,
    SpecialistServer,
    best_specialist_reading,
    export_specialist_gguf,
    specialist_pricer,
    start_specialist_server,
    top_logprobs,
    whole_dollars,
)
