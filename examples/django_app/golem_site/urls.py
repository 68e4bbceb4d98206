from django.urls import path

from jobs import views

urlpatterns = [
    path("jobs", views.start_job),
    path("jobs/<str:job_id>", views.job_state),
    path("jobs/<str:job_id>/result", views.job_result),
    path("jobs/<str:job_id>/cancel", views.cancel_job),
]
