"""Settings for the example: no database, no sessions, JSON views only."""
import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["jobs"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "golem_site.urls"
WSGI_APPLICATION = "golem_site.wsgi.application"
DATABASES = {}
USE_TZ = True
APPEND_SLASH = False

# Where golem_sync keeps jobs: one SQLite file shared by every worker process, or a postgresql:// URL.
GOLEM_JOB_STORE = os.environ.get("GOLEM_JOB_STORE", "jobs.db")
GOLEM_IMAGE = "golem/alpine:latest"
