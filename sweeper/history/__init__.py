"""The results history: every run kept in a database (SQLite or PostgreSQL through
SQLAlchemy Core, versioned by Alembic), its series, their trends, and the regressions that
are real (detect.py). settings.py is the config node (`history.*`); store.py the database;
ingest.py result.json files to rows; detect.py the findings; trend.py and site.py what people
look at; cli.py `python -m sweeper.collect history ...`."""

import logging

# Alembic reports each plugin it sets up and each migration at INFO; under Hydra's logging
# every sweep would print them. Warnings and errors still show.
logging.getLogger("alembic").setLevel(logging.WARNING)
