"""Alembic environment: runs migrations online against the URL given in the config's attributes."""

from alembic import context
from sqlalchemy import create_engine, pool

url = context.config.attributes["database_url"]
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
