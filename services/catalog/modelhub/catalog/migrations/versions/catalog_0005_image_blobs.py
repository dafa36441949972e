"""Image blob collection: the indexes that tell which stored image blobs an image that is not Deleted still uses
(its file, its ComfyUI prompt and workflow JSON; adapters/community_queries.py: referenced_image_blobs).

Without them every batch of the collection (1,000 blobs) would read the whole `images` table, jsonb included:
the work of a round would grow with the square of the gallery's size. Partial: Deleted images are left out
(their bytes are what the collection removes), and so are images without ComfyUI JSON.

The catalog's revisions form one fixed chain: catalog_0001 (models) <- catalog_0002 (files) <- catalog_0003
(community) <- catalog_0004 (AutoV3) <- catalog_0005 (this).

Revision ID: catalog_0005
Revises: catalog_0004
Create Date: 2026-11-21
"""

from alembic import op

revision = "catalog_0005"
down_revision = "catalog_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX images_live_blob ON images (blob_sha256) WHERE status <> 'Deleted'")
    for part in ("prompt", "workflow"):
        key = f"comfyui_{part}_sha256"
        op.execute(
            f"CREATE INDEX images_live_comfyui_{part} ON images ((generation->>'{key}')) "
            f"WHERE status <> 'Deleted' AND generation->>'{key}' <> ''"
        )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS images_live_comfyui_workflow")
    op.execute("DROP INDEX IF EXISTS images_live_comfyui_prompt")
    op.execute("DROP INDEX IF EXISTS images_live_blob")
