//! ImageService and crius' Admin service: thin handlers over `image.rs`.

use std::sync::Arc;

use cri_api::admin;
use cri_api::v1 as cri;
use cri_api::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::runtime::Runtime;
use crate::server::runtime::BoxStream;
use crate::server::task::detached;

pub struct ImageSvc {
    pub rt: Arc<Runtime>,
}

type Res<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ImageService for ImageSvc {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Res<cri::ListImagesResponse> {
        let images = self.rt.list_images(req.into_inner().filter)?;
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    type StreamImagesStream = BoxStream<cri::StreamImagesResponse>;
    async fn stream_images(
        &self,
        req: Request<cri::StreamImagesRequest>,
    ) -> Res<Self::StreamImagesStream> {
        if !self.rt.gates.enabled("CRIListStreaming") {
            return Err(Status::unimplemented(
                "StreamImages is not implemented by crius: alpha feature CRIListStreaming is off (enable it with feature_gates.CRIListStreaming = true)",
            ));
        }
        let images = self.rt.list_images(req.into_inner().filter)?;
        let pages: Vec<Result<cri::StreamImagesResponse, Status>> = images
            .chunks(100)
            .map(|c| Ok(cri::StreamImagesResponse { images: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(pages))))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Res<cri::ImageStatusResponse> {
        let req = req.into_inner();
        Ok(Response::new(self.rt.image_status(req.image, req.verbose)?))
    }

    async fn pull_image(&self, req: Request<cri::PullImageRequest>) -> Res<cri::PullImageResponse> {
        let req = req.into_inner();
        let rt = self.rt.clone();
        let image_ref = detached("PullImage", async move {
            rt.pull_image(req.image, req.auth).await
        })
        .await?;
        Ok(Response::new(cri::PullImageResponse { image_ref }))
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Res<cri::RemoveImageResponse> {
        let (rt, image) = (self.rt.clone(), req.into_inner().image);
        // Deleting layers and snapshots walks the disk: off the async workers, and finished even if
        // the client goes away.
        detached("RemoveImage", async move {
            tokio::task::spawn_blocking(move || rt.remove_image(image))
                .await
                .map_err(|e| Error::internal("RemoveImage task", e))?
        })
        .await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _req: Request<cri::ImageFsInfoRequest>,
    ) -> Res<cri::ImageFsInfoResponse> {
        let rt = self.rt.clone();
        // A walk of the image store: off the async workers.
        let info = tokio::task::spawn_blocking(move || rt.image_fs_info())
            .await
            .map_err(|e| Status::internal(format!("ImageFsInfo task failed: {e}")))??;
        Ok(Response::new(info))
    }
}

pub struct AdminSvc {
    pub rt: Arc<Runtime>,
}

#[tonic::async_trait]
impl admin::admin_server::Admin for AdminSvc {
    async fn import_image(
        &self,
        req: Request<admin::ImportImageRequest>,
    ) -> Res<admin::ImportImageResponse> {
        let path = std::path::PathBuf::from(req.into_inner().path);
        if !path.is_absolute() {
            return Err(Error::invalid(
                "path",
                format!("{} is not an absolute path", path.display()),
            )
            .into());
        }
        let images = self.rt.images.clone();
        let refs = tokio::task::spawn_blocking(move || images.import(&path))
            .await
            .map_err(|e| Error::internal("import task", e))?
            .map_err(crate::image::image_err)?;
        let image_ids = refs
            .iter()
            .map(|r| {
                self.rt
                    .images
                    .get(r)
                    .ok()
                    .flatten()
                    .map(|i| i.id)
                    .unwrap_or_default()
            })
            .collect();
        Ok(Response::new(admin::ImportImageResponse {
            references: refs,
            image_ids,
        }))
    }
}
