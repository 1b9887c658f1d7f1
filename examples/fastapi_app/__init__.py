"""An application that uses tidings: FastAPI, SQLAlchemy and the dashboard mounted.

Run it with `python -m examples.fastapi_app` (embedded Postgres and Redis unless the
`TIDINGS_*_URL` settings are set), then open http://127.0.0.1:8080/.
"""
