// Profile preferences for scripts/thunderbird-gui.sh (marionette.port is
// appended by the script). The IMAP account itself is created by drive.py
// through Marionette, after the password is in the login manager, so that
// Thunderbird never shows a password prompt.

// No first-run UI: account wizard, start page, default-client check, rights
// bar, donation/what's-new pages, in-app notifications, update checks.
user_pref("mail.provider.suppress_dialog_on_startup", true);
user_pref("mail.shell.checkDefaultClient", false);
user_pref("mailnews.start_page.enabled", false);
user_pref("mailnews.start_page.override_url", "");
user_pref("mail.rights.version", 1);
user_pref("app.donation.eoy.version.viewed", 999);
user_pref("mail.inappnotifications.enabled", false);
user_pref("app.update.disabledForTesting", true);
user_pref("app.update.auto", false);
user_pref("app.update.checkInstallTime", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("mailnews.auto_config_url", "");
user_pref("mail.cloud_files.enabled", false);
user_pref("calendar.integration.notify", false);
user_pref("mail.spellcheck.inline", false);

// No telemetry, crash reporting or other network traffic.
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("toolkit.telemetry.unified", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("network.dns.disablePrefetch", true);
user_pref("services.settings.server", "http://127.0.0.1:9/");
user_pref("mailnews.headers.showUserAgent", false);

// New mail: no sound or popup over the window being photographed.
user_pref("mail.biff.play_sound", false);
user_pref("mail.biff.show_alert", false);
user_pref("mail.biff.show_tray_icon", false);
user_pref("mail.biff.use_system_alert", false);

// Marking read on display, at once (Thunderbird's defaults, spelled out).
user_pref("mailnews.mark_message_read.auto", true);
user_pref("mailnews.mark_message_read.delay", false);

// Extensions as the brief allows (none are needed by drive.py).
user_pref("xpinstall.signatures.required", false);
user_pref("extensions.experiments.enabled", true);
user_pref("extensions.autoDisableScopes", 0);

// Marionette (the driver).
user_pref("marionette.enabled", true);
