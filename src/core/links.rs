//! Download links where attachments should be: QQ Mail's 超大附件 (ftn links), 163/126's
//! 网盘附件 / 文件中转站, and the common cloud drives. Such a mail carries no file the daemon
//! could read; the reply says to attach the files, and the digest lists the links for staff.

/// Hosts (and paths) of download pages for files sent as links.
const DOWNLOAD_HOSTS: &[&str] = &[
    // QQ Mail / Tencent Exmail 超大附件, 文件中转站
    "mail.qq.com/cgi-bin/ftn",
    "exmail.qq.com/cgi-bin/ftn",
    "wx.mail.qq.com/ftn",
    "ftn.qq.com",
    // NetEase 163/126/yeah 网盘附件 and 超大附件
    "mail.163.com/large-attachment",
    "mail.126.com/large-attachment",
    "dashi.163.com",
    "fs.163.com",
    "fs.126.com",
    "u.163.com",
    "nos.netease.com",
    // Cloud drives
    "pan.baidu.com",
    "yun.baidu.com",
    "aliyundrive.com",
    "alipan.com",
    "cloud.189.cn",
    "caiyun.139.com",
    "yun.139.com",
    "weiyun.com",
    "pan.quark.cn",
    "123pan.com",
    "lanzou",
    "115.com",
    "feishu.cn/file",
    "wps.cn/l/",
    "kdocs.cn/l/",
    "onedrive.live.com",
    "1drv.ms",
    "sharepoint.com",
    "drive.google.com",
    "dropbox.com",
    "wetransfer.com",
];

/// Links at most this many are kept (a mail full of links is still one finding).
const MAX_LINKS: usize = 10;
/// A link longer than this is cut (it is shown to staff, not followed).
const MAX_LINK_CHARS: usize = 300;

/// The download links in a mail body, in order, without repeats.
pub fn download_links(body: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let lower = body.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find("http") {
        let start = from + p;
        let rest = &body[start..];
        let end = rest
            .char_indices()
            .find(|&(_, c)| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '）' | '，' | '。' | '、') || !c.is_ascii())
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let url = &rest[..end];
        from = start + end.max(4);
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            continue;
        }
        let l = url.to_ascii_lowercase();
        if DOWNLOAD_HOSTS.iter().any(|h| l.contains(h)) {
            let shown: String = url.chars().take(MAX_LINK_CHARS).collect();
            if !out.contains(&shown) {
                out.push(shown);
            }
            if out.len() >= MAX_LINKS {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_qq_ftn_163_and_cloud_drive_links_only() {
        let body = "从QQ邮箱发来的超大附件\n\n材料.zip (250M, 2020年10月10日 到期)\n进入下载页面：https://mail.qq.com/cgi-bin/ftnExs_download?k=abc&t=exs_ftn_download\n\
            单位网站 http://www.leshan.gov.cn/ 网易：http://mail.163.com/large-attachment-download/index.html?p=X1&file=Y，百度网盘 https://pan.baidu.com/s/1abc 提取码 x1y2 \
            again https://pan.baidu.com/s/1abc";
        let links = download_links(body);
        assert_eq!(
            links,
            vec![
                "https://mail.qq.com/cgi-bin/ftnExs_download?k=abc&t=exs_ftn_download",
                "http://mail.163.com/large-attachment-download/index.html?p=X1&file=Y",
                "https://pan.baidu.com/s/1abc",
            ]
        );
        assert!(download_links("请查收附件。谢谢！http://www.example.cn").is_empty());
        assert!(download_links("").is_empty());
        assert!(download_links("http").is_empty());
        // At most MAX_LINKS, each at most MAX_LINK_CHARS.
        let many: String = (0..MAX_LINKS + 5).map(|i| format!("https://pan.baidu.com/s/{i} ")).collect();
        assert_eq!(download_links(&many).len(), MAX_LINKS);
        let long = format!("https://pan.baidu.com/s/{}", "a".repeat(MAX_LINK_CHARS));
        assert_eq!(download_links(&long)[0].chars().count(), MAX_LINK_CHARS);
    }
}
