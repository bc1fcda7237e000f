"""The de-attribution service (`dareu serve`): removal requests over HTTP, Ray jobs behind them, a receipt per
owner, requests in sequence.

    spec.py       a request checked and resolved before any job starts
    store.py      the SQLite request store (survives a restart)
    cluster.py    Ray: submit, inspect, stop the request jobs; a local head when none is given
    app.py        the FastAPI app and the loop that reconciles the store with Ray
    job.py        what one request runs inside its Ray job (stages, each resumable)
    owners.py     forget splits cut from owner names; the request world
    reference.py  the retain reference trained without the removed owners
    receipt.py    the receipt: per owner, before and after
"""
