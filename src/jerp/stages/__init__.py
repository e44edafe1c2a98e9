"""One function per pipeline stage; the Prefect flows in flows/ call these."""
