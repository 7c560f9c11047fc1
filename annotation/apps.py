from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from annotation.access import hidden_segmentations, member_studies
        from annotation.services.seg_stow import seg_attach_stored
        from imaging.access import register_series_hider, register_study_access
        from imaging.hooks import register_after_store

        register_study_access(member_studies)
        register_series_hider(hidden_segmentations)
        register_after_store(seg_attach_stored)  # a reader's SEG stored from the viewer joins their read
