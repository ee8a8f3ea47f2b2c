from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("streams", "0002_producer_cursor")]

    operations = [
        migrations.RenameField(model_name="sample", old_name="stats", new_name="stats_json"),
        migrations.AlterField(model_name="sample", name="stats_json", field=models.TextField()),
    ]
