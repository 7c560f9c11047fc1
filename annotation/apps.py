from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from annotation.access import hidden_segmentations, member_studies
        from imaging.access import register_series_hider, register_study_access

        register_study_access(member_studies)
        register_series_hider(hidden_segmentations)
