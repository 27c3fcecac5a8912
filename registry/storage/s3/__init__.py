"""The S3 store: zot's image layout as objects under a bucket's rootdirectory, shared by every member."""
